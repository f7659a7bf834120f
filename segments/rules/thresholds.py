"""top_percent / bottom_percent thresholds: measured live, or as stored by a segment's full refresh.

Public: `measure_thresholds(rule, *, fields) -> Thresholds`, `percent_conditions(rule)`; the
compiler's `threshold_key` and `percent_threshold` build the keys and the live subquery.

A threshold is the value a contact needs to be in the top (bottom) P% of contacts with a set
value (see `expressions.PercentThreshold`). Computing it ranks every contact, which a scoped
refresh of a few contacts cannot afford. So a segment's full refresh measures each of its rule's
thresholds once, builds the membership with them and stores them on the segment
(`Segment.percent_thresholds`); a scoped refresh (`refresh_contacts`) and the explainer, when
explaining that segment, use the stored values. Between two full refreshes a contact whose value
crosses the stored threshold joins or leaves at once; contacts pushed across it only by others'
values moving (the threshold drifting) follow at the next full refresh (the scheduled sweep, or
the refresh after a metrics run for `metrics.*` fields). A rule evaluated without stored
thresholds (previews of an unsaved rule, counts) measures them live, in the same statement.

Thresholds are keyed by condition ("lead_score top_percent 10"), not by position: the same
condition has the same threshold wherever it sits in a rule. `None` means no contact has a set
value, so nobody qualifies.
"""

from __future__ import annotations

from contacts.models import Contact
from segments.rules.compiler import PERCENT_OPS, Thresholds, percent_threshold, threshold_key
from segments.rules.registry import Field
from segments.rules.validation import InvalidRule, referenced_slugs, validate_rule


def percent_conditions(rule: object) -> list[dict]:
    """Every top/bottom_percent condition in a rule tree."""
    if isinstance(rule, list):
        return [found for child in rule for found in percent_conditions(child)]
    if not isinstance(rule, dict):
        return []
    if rule.get("op") in PERCENT_OPS and "field" in rule:
        return [rule]
    return [found for key in ("all", "any", "not") if key in rule for found in percent_conditions(rule[key])]


def measure_thresholds(rule: object, *, fields: dict[str, Field]) -> Thresholds:
    """Each percent condition's threshold now, one query per distinct condition (none without).

    Raises InvalidRule, as compiling would, when a rule with percent conditions does not validate.
    """
    conditions = percent_conditions(rule)
    if not conditions:
        return {}
    errors = validate_rule(rule, segment_slugs=referenced_slugs(rule), fields=fields)
    if errors:
        raise InvalidRule(errors)
    thresholds: Thresholds = {}
    for condition in conditions:
        key = threshold_key(condition["field"], condition["op"], condition.get("value"))
        if key in thresholds:
            continue
        field = fields[condition["field"]]
        measured = Contact.objects.annotate(t=percent_threshold(field, condition["op"], condition["value"]))
        found = list(measured.values_list("t", flat=True)[:1])
        thresholds[key] = None if not found or found[0] is None else float(found[0])
    return thresholds
