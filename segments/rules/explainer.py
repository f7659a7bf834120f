"""Explain a rule for one contact: the value of every node, and the contact's own values.

Public: `explain(rule, contact, *, now, fields=None, thresholds=None) -> Explanation`,
`Explanation`, `Node`.

The explainer evaluates the rule in Python with the compiler's semantics (see compiler.py and
DESIGN.md "Rule language"), so the two can check each other: a property test asserts they agree.
It reads a bounded number of queries whatever the data: the field registry, the contact with its
company/owner/metrics, the contact's activities of the kinds the rule names, its memberships of
the segments the rule names, and one query per top/bottom_percent threshold (computed by the very
SQL the compiler uses) unless `thresholds` holds it: explaining a saved segment passes the
thresholds its last full refresh stored (`Segment.percent_thresholds`), as its refreshes use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ObjectDoesNotExist

from contacts.models import Activity, Contact
from predictions.models import PropensityScore
from segments.models import Membership
from segments.rules.clock import bounds, relative_bounds
from segments.rules.compiler import Thresholds, percent_threshold, threshold_key
from segments.rules.expressions import fold
from segments.rules.registry import Field, get_fields
from segments.rules.validation import InvalidRule, referenced_slugs, validate_rule
from segments.rules.wording import condition_text, observed_text

_TEXT_OPS = {
    "eq": lambda v, x: v == x,
    "neq": lambda v, x: v != x,
    "contains": lambda v, x: x in v,
    "starts_with": lambda v, x: v.startswith(x),
    "ends_with": lambda v, x: v.endswith(x),
}
_ORDER_OPS = {
    "eq": lambda v, x: v == x,
    "neq": lambda v, x: v != x,
    "gt": lambda v, x: v > x,
    "gte": lambda v, x: v >= x,
    "lt": lambda v, x: v < x,
    "lte": lambda v, x: v <= x,
}


@dataclass
class Node:
    path: str
    kind: str
    label: str
    result: bool
    value: object = None
    children: list[Node] = field(default_factory=list)
    field: Field | None = None

    def __str__(self) -> str:
        """A leaf in words with what the contact has ("Lead score is at least 50: 80"); a group's heading."""
        if self.kind in ("all", "any", "not"):
            return self.label
        return f"{self.label}: {observed_text(self.kind, self.value, field=self.field)}"

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "label": self.label,
            "result": self.result,
            "value": _jsonable(self.value),
            "text": str(self),
            "children": [child.to_dict() for child in self.children],
        }

    def reasons(self) -> list[str]:
        """The leaf conditions that make this node true (empty when it is false)."""
        if not self.result:
            return []
        if self.kind == "not":
            return [f"Not: {self.children[0]}"]
        if self.kind in ("all", "any"):
            return [reason for child in self.children for reason in child.reasons()]
        return [str(self)]


@dataclass
class Explanation:
    """The rule's tree for one contact, and what keeps the contact in the segment besides the rule.

    `held`: one sentence per merge that holds the contact in a suppression segment whatever its
    rule says (segments/merges.py); the refresh's target reads the same holds, so a held contact
    is a member and the explanation says why.
    """

    root: Node
    held: list[str] = field(default_factory=list)

    @property
    def result(self) -> bool:
        return self.root.result or bool(self.held)

    def reasons(self) -> list[str]:
        return self.root.reasons() + self.held

    def summary(self) -> str:
        if self.result:
            return "Matches: " + "; ".join(self.reasons())
        failing = _first_false(self.root)
        if failing.kind == "not":
            return f"Does not match: excluded because {failing.children[0]}"
        return f"Does not match: {failing}"

    def to_dict(self) -> dict:
        return {
            "result": self.result,
            "summary": self.summary(),
            "reasons": self.reasons(),
            "held": self.held,
            "tree": self.root.to_dict(),
        }


def _first_false(node: Node) -> Node:
    """The first failing condition (or `not`) that makes a false node false."""
    while node.kind in ("all", "any") and not node.result:
        node = next(child for child in node.children if not child.result)
    return node


@dataclass
class ContactFacts:
    """What the explainer reads about one contact, loaded beforehand for many (see `load_facts`)."""

    contact: Contact
    activities: list[dict]
    member_of: set[str]
    scores: dict[tuple[int, str], object] = field(default_factory=dict)


def explain(
    rule: object,
    contact: Contact,
    *,
    now: datetime,
    fields: dict[str, Field] | None = None,
    thresholds: Thresholds | None = None,
    facts: ContactFacts | None = None,
) -> Explanation:
    """Evaluate `rule` for `contact` at `now`; raises InvalidRule when validation finds errors.

    `thresholds`: stored top/bottom_percent thresholds by condition (others are measured live).
    `facts`: the contact's data from `load_facts` for a rule it covers; else it is read here.
    """
    fields = fields if fields is not None else get_fields()
    errors = validate_rule(rule, segment_slugs=referenced_slugs(rule), fields=fields)
    if errors or not isinstance(rule, dict):
        raise InvalidRule(errors)
    return Explanation(_Evaluator(rule, contact, fields, now, thresholds or {}, facts).node(rule, ""))


def load_facts(
    rule: dict, contact_ids: list[int], *, now: datetime, fields: dict[str, Field]
) -> dict[int, ContactFacts]:
    """What `explain(rule, ...)` reads about each of these contacts, in three queries whatever their number."""
    nodes = list(_walk(rule))
    contacts = Contact.objects.select_related(*_relations(nodes, fields)).in_bulk(contact_ids)
    activities: dict[int, list[dict]] = {pk: [] for pk in contacts}
    rows = _activities(Activity.objects.filter(contact_id__in=list(contacts)), nodes, now=now)
    for row in rows.values("contact_id", *ACTIVITY_VALUES):
        activities[row.pop("contact_id")].append(row)
    member_of: dict[int, set[str]] = {pk: set() for pk in contacts}
    slugs = referenced_slugs(rule)
    if slugs:
        memberships = Membership.objects.filter(contact_id__in=list(contacts), segment__slug__in=slugs)
        for contact_id, slug in memberships.values_list("contact_id", "segment__slug"):
            member_of[contact_id].add(slug)
    scores = _scores(list(contacts), nodes, fields)
    return {
        pk: ContactFacts(contact, activities[pk], member_of[pk], scores.get(pk, {})) for pk, contact in contacts.items()
    }


def _scores(contact_ids: list[int], nodes: list[dict], fields: dict[str, Field]) -> dict[int, dict]:
    """The propensity scores the rule reads, by contact and (model id, column): one query, or none."""
    model_ids = {score[0] for node in nodes if "field" in node and (score := fields[node["field"]].score)}
    if not model_ids:
        return {}
    found: dict[int, dict] = {}
    rows = PropensityScore.objects.filter(contact_id__in=contact_ids, model_id__in=model_ids)
    for row in rows.values("contact_id", "model_id", *SCORE_COLUMNS):
        found.setdefault(row["contact_id"], {}).update({(row["model_id"], c): row[c] for c in SCORE_COLUMNS})
    return found


SCORE_COLUMNS = ("probability", "percentile", "tier")


ACTIVITY_VALUES = ("kind", "occurred_at", "topic", "product", "campaign", "url", "value")


def _relations(nodes: list[dict], fields: dict[str, Field]) -> list[str]:
    used = [fields[node["field"]] for node in nodes if "field" in node]
    return sorted({f.lookup.split("__")[0] for f in used if "__" in f.lookup})


def _activities(activities, nodes: list[dict], *, now: datetime):
    """Narrow `activities` to the kinds and the longest window the rule's event conditions read."""
    events = [node for node in nodes if "event" in node]
    if not events:
        return activities.none()
    activities = activities.filter(kind__in={e["event"]["kind"] for e in events}, occurred_at__lte=now)
    if all("within_days" in e for e in events):
        longest = max(e["within_days"] for e in events)
        activities = activities.filter(occurred_at__gte=now - timedelta(days=longest))
    return activities


def _walk(rule: dict):
    yield rule
    for key in ("all", "any"):
        for child in rule.get(key, ()):
            yield from _walk(child)
    if "not" in rule:
        yield from _walk(rule["not"])


class _Evaluator:
    def __init__(
        self,
        rule: dict,
        contact: Contact,
        fields: dict[str, Field],
        now: datetime,
        thresholds: Thresholds,
        facts: ContactFacts | None = None,
    ) -> None:
        self.fields, self.now, self.thresholds = fields, now, thresholds
        if facts is not None:
            self.contact, self.activities, self.member_of = facts.contact, facts.activities, facts.member_of
            self.scores = facts.scores
            return
        nodes = list(_walk(rule))
        self.scores = _scores([contact.pk], nodes, fields).get(contact.pk, {})
        self.contact = Contact.objects.select_related(*_relations(nodes, fields)).get(pk=contact.pk)
        self.activities = list(
            _activities(Activity.objects.filter(contact=self.contact), nodes, now=now).values(*ACTIVITY_VALUES)
        )
        slugs = referenced_slugs(rule)
        self.member_of = set()
        if slugs:
            memberships = Membership.objects.filter(contact=self.contact, segment__slug__in=slugs)
            self.member_of = set(memberships.values_list("segment__slug", flat=True))

    def node(self, rule: dict, path: str) -> Node:
        for key in ("all", "any"):
            if key in rule:
                children = [self.node(child, f"{_join(path, key)}[{i}]") for i, child in enumerate(rule[key])]
                result = all(c.result for c in children) if key == "all" else any(c.result for c in children)
                label = "All of these hold" if key == "all" else "Any of these holds"
                return Node(path, key, label, result, children=children)
        if "not" in rule:
            child = self.node(rule["not"], _join(path, "not"))
            return Node(path, "not", "Not", not child.result, children=[child])
        if "event" in rule:
            return self.event(rule, path)
        if "in_segment" in rule:
            slug = rule["in_segment"]
            member = slug in self.member_of
            label = condition_text(rule, fields=self.fields)
            return Node(path, "in_segment", label, member, "member" if member else "not a member")
        field = self.fields[rule["field"]]
        op, value = rule["op"], rule.get("value")
        actual = self.value(field)
        result, shown = self.condition(field, op, value, actual)
        return Node(path, "condition", condition_text(rule, fields=self.fields), result, shown, field=field)

    # Values

    def value(self, field: Field) -> object:
        if field.score:
            return self.scores.get(field.score)
        if field.property_key:
            properties = self.contact.properties if isinstance(self.contact.properties, dict) else {}
            return _typed_property(properties.get(field.property_key), field.type)
        current: object = self.contact
        for part in field.lookup.split("__"):
            try:
                current = getattr(current, part)
            except ObjectDoesNotExist:
                return None
            if current is None:
                return None
        if field.type == "tags" and not isinstance(current, list):
            return None
        return current

    def condition(self, field: Field, op: str, value, actual) -> tuple[bool, object]:
        is_set = actual is not None and not (isinstance(actual, str) and actual == "")
        if op in ("is_set", "is_not_set"):
            return is_set == (op == "is_set"), actual
        if not is_set:
            return False, actual
        if op in ("top_percent", "bottom_percent"):
            threshold = self.threshold(field, op, value)
            reached = threshold is not None and (
                float(actual) >= threshold if op == "top_percent" else float(actual) <= threshold
            )
            return reached, {"value": actual, "threshold": threshold}
        compare = getattr(self, f"{field.type}_condition")
        return compare(field, op, value, actual), actual

    def text_condition(self, field: Field, op: str, value, actual: str) -> bool:
        if op in ("in", "not_in"):
            return (fold(actual) in {fold(item) for item in value}) == (op == "in")
        return _TEXT_OPS[op](fold(actual), fold(value))

    def choice_condition(self, field: Field, op: str, value, actual: str) -> bool:
        if op in ("in", "not_in"):
            return (actual in value) == (op == "in")
        return (actual == value) == (op == "eq")

    def number_condition(self, field: Field, op: str, value, actual) -> bool:
        if op == "between":
            return _numbers(actual, value[0], _ORDER_OPS["gte"]) and _numbers(actual, value[1], _ORDER_OPS["lte"])
        return _numbers(actual, value, _ORDER_OPS[op])

    def bool_condition(self, field: Field, op: str, value, actual: bool) -> bool:
        return actual is (op == "is_true")

    def date_condition(self, field: Field, op: str, value, actual) -> bool:
        def comparable(moment):  # custom date properties hold ISO text and compare as text
            return moment.isoformat() if field.property_key else moment

        if op in ("in_last_days", "in_next_days", "more_than_days_ago"):
            low, high = relative_bounds(field.type, op, value, now=self.now)
            if low is None:
                return actual < comparable(high)
            return comparable(low) <= actual <= comparable(high)
        if op == "before":
            return actual < comparable(bounds(field.type, value)[0])
        if op == "after":
            return actual > comparable(bounds(field.type, value)[1])
        return comparable(bounds(field.type, value[0])[0]) <= actual <= comparable(bounds(field.type, value[1])[1])

    datetime_condition = date_condition

    def tags_condition(self, field: Field, op: str, value, actual: list) -> bool:
        held = {fold(tag) for tag in actual if isinstance(tag, str)}
        wanted = {fold(tag) for tag in value}
        if op == "contains_all":
            return wanted <= held
        return bool(wanted & held) == (op == "contains_any")

    def threshold(self, field: Field, op: str, percent) -> float | None:
        key = threshold_key(field.path, op, percent)
        if key in self.thresholds:
            stored = self.thresholds[key]
            return None if stored is None else float(stored)
        threshold = percent_threshold(field, op, percent)
        found = Contact.objects.filter(pk=self.contact.pk).annotate(t=threshold).values_list("t", flat=True)
        value = found.first()
        return None if value is None else float(value)

    # Events

    def event(self, rule: dict, path: str) -> Node:
        filters, op, value = rule["event"], rule["op"], rule.get("value")
        since = self.now - timedelta(days=rule["within_days"]) if "within_days" in rule else None
        matching = [a for a in self.activities if _activity_matches(a, filters, since=since, now=self.now)]
        count = len(matching)
        cents = sum(round(a["value"] * 100) for a in matching if a["value"] is not None)
        result = {
            "performed": count > 0,
            "not_performed": count == 0,
            "count_gte": count >= (value or 0),
            "count_lte": count <= (value or 0),
            "count_eq": count == value,
            "sum_gte": cents >= round((value or 0) * 100),
        }[op]
        shown = {"count": count, "sum": Decimal(cents) / 100} if op == "sum_gte" else {"count": count}
        return Node(path, "event", condition_text(rule, fields=self.fields), result, shown)


def _activity_matches(activity: dict, filters: dict, *, since: datetime | None, now: datetime) -> bool:
    if activity["kind"] != filters["kind"] or activity["occurred_at"] > now:
        return False
    if since is not None and activity["occurred_at"] < since:
        return False
    for key in ("topic", "product", "campaign"):
        if key in filters and fold(activity[key]) != fold(filters[key]):
            return False
    return "url_contains" not in filters or fold(filters["url_contains"]) in fold(activity["url"])


def _typed_property(raw: object, type: str) -> object:
    """A custom property value, or None when absent or not of the definition's JSON type."""
    if type in ("text", "choice", "date"):
        return raw if isinstance(raw, str) else None
    if type == "number":
        return raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if type == "bool":
        return raw if isinstance(raw, bool) else None
    return raw if isinstance(raw, list) else None


def _numbers(actual, rule_value, compare) -> bool:
    # As in SQL: an int rule value compares exactly; a float compares as double precision.
    if isinstance(rule_value, int):
        return compare(actual, rule_value)
    return compare(float(actual), float(rule_value))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _jsonable(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value
