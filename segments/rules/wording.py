"""How rules read to people: the one wording table for the explainer, the pages and the rule builder.

Public: `OPERATORS`, `EVENT_OPERATORS`, `operator_controls() -> dict[str, str]`,
`value_text(field, value)`, `condition_text(rule, *, fields, segment_names=None) -> str`,
`observed_text(node_kind, value, *, field=None) -> str`, `RuleLine`,
`rule_lines(rule, *, fields, segment_names=None) -> list[RuleLine]`,
`rule_text(rule, *, fields, segment_names=None) -> str`, `segment_names(*rules) -> dict[str, str]`,
`DiffRow`, `compare_rules(old, new, *, fields, segment_names=None) -> list[DiffRow]`.

A condition reads "Company employee count is at least 1,000"; a choice value shows its label
("Lifecycle stage is one of Marketing qualified lead or Sales qualified lead"); an event reads
"Email click about cloud-migration at least 3 times in the last 30 days"; what a contact has reads
"1.08, threshold 5.76" or "no value". `rule_lines` lays a whole rule out as indented lines, one
per group or condition, so two versions of a rule can be shown and diffed line by line.
Anything the table does not know (an unknown field or operator in an invalid rule) is shown as
written, never dropped.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from contacts.models import ActivityKind
from segments.models import Segment
from segments.rules.registry import Field
from segments.rules.validation import referenced_slugs

# Property conditions: "<field label> <words>", {value} the rule's value, {low}/{high} a between's ends.
OPERATORS = {
    "eq": "is {value}",
    "neq": "is not {value}",
    "in": "is one of {value}",
    "not_in": "is none of {value}",
    "contains": "contains {value}",
    "starts_with": "starts with {value}",
    "ends_with": "ends with {value}",
    "gt": "is more than {value}",
    "gte": "is at least {value}",
    "lt": "is less than {value}",
    "lte": "is at most {value}",
    "between": "is between {low} and {high}",
    "top_percent": "is in the top {value}%",
    "bottom_percent": "is in the bottom {value}%",
    "is_true": "is yes",
    "is_false": "is no",
    "before": "is before {value}",
    "after": "is after {value}",
    "in_last_days": "is in the last {value} days",
    "in_next_days": "is in the next {value} days",
    "more_than_days_ago": "is more than {value} days ago",
    "contains_any": "includes any of {value}",
    "contains_all": "includes all of {value}",
    "contains_none": "includes none of {value}",
    "is_set": "is set",
    "is_not_set": "is not set",
}
# Event conditions: {kind} the activity kind's label (with its filters), {value} the count or sum.
EVENT_OPERATORS = {
    "performed": "{kind} at least once",
    "not_performed": "no {kind}",
    "count_gte": "{kind} at least {value} times",
    "count_lte": "{kind} at most {value} times",
    "count_eq": "{kind} exactly {value} times",
    "sum_gte": "{kind} worth at least {value} in total",
}
_EVENT_FILTERS = (("topic", "about"), ("product", "for product"), ("campaign", "from campaign"))
_LIST_JOINS = {"in": "or", "not_in": "or", "contains_any": "or", "contains_all": "and", "contains_none": "or"}
_KIND_LABELS = dict(ActivityKind.choices)
_QUOTED = ("text", "tags")


def operator_controls() -> dict[str, str]:
    """Each operator as the rule builder's operator menu shows it: the words with "…" for the value."""
    controls = {
        op: words.replace("{low} and {high}", "… and …").replace("{value}", "…") for op, words in OPERATORS.items()
    }
    for op, words in EVENT_OPERATORS.items():
        controls[op] = "never" if op == "not_performed" else words.replace("{kind} ", "").replace("{value}", "…")
    return controls


def value_text(field: Field | None, value: object, *, join: str = "or") -> str:
    """A rule's value as words: choice labels, "1,000", "yes", "3 Jan 2026", “quoted text”."""
    if isinstance(value, list):
        items = [value_text(field, item) for item in value]
        return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {join} {items[-1]}"
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float | Decimal):
        return number_text(value)
    if field is not None and field.type == "choice":
        return field.choice_label(str(value))
    if field is not None and field.type in ("date", "datetime"):
        return _date_text(str(value))
    if field is None or field.type in _QUOTED:
        return f"“{value}”"
    return str(value)


def number_text(value: int | float | Decimal) -> str:
    """1,200 · 5.76 · 0.5: thousands separated, at most two decimals, no trailing zeros."""
    if isinstance(value, int) or (isinstance(value, float | Decimal) and value == int(value)):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _date_text(value: str) -> str:
    try:
        if len(value) == 10:
            return f"{date.fromisoformat(value):%-d %b %Y}"
        return f"{datetime.fromisoformat(value):%-d %b %Y %H:%M}"
    except ValueError:
        return value


def condition_text(rule: dict, *, fields: dict[str, Field], segment_names: dict[str, str] | None = None) -> str:
    """One leaf condition (property, event or membership) in words."""
    if "in_segment" in rule:
        slug = rule["in_segment"]
        return f"Member of {(segment_names or {}).get(slug, slug)}"
    if "event" in rule:
        return _event_text(rule)
    path = rule.get("field")
    field = fields.get(path) if isinstance(path, str) else None
    label = field.label if field is not None else str(path)
    op, value = str(rule.get("op")), rule.get("value")
    words = OPERATORS.get(op)
    if words is None:
        return f"{label} {op} {value_text(field, value)}".strip()
    if op == "between" and isinstance(value, list) and len(value) == 2:
        return f"{label} {words.format(low=value_text(field, value[0]), high=value_text(field, value[1]))}"
    if op in ("top_percent", "bottom_percent", "in_last_days", "in_next_days", "more_than_days_ago"):
        return f"{label} {words.format(value=value_text(None, value))}"
    return f"{label} {words.format(value=value_text(field, value, join=_LIST_JOINS.get(op, 'or')))}"


def _event_text(rule: dict) -> str:
    filters = rule["event"] if isinstance(rule.get("event"), dict) else {}
    kind_name = str(filters.get("kind"))
    kind = _KIND_LABELS.get(kind_name, kind_name)
    about = "".join(f" {words} “{filters[key]}”" for key, words in _EVENT_FILTERS if filters.get(key))
    if filters.get("url_contains"):
        about += f" on a page whose address contains “{filters['url_contains']}”"
    op, value = str(rule.get("op")), rule.get("value")
    words = EVENT_OPERATORS.get(op, f"{{kind}} {op} {{value}}")
    amount = number_text(value) if isinstance(value, int | float | Decimal) and not isinstance(value, bool) else value
    text = words.format(kind=f"{kind.lower()}{about}", value=amount)
    within = rule.get("within_days")
    text += f" in the last {within} days" if within is not None else " (all time)"
    return text[:1].upper() + text[1:]


def observed_text(kind: str, value: object, *, field: Field | None = None) -> str:
    """What the explainer found for one contact: "1,200", "no value", "1.08, threshold 5.76", "3 found"."""
    if kind == "in_segment":
        return "yes" if value == "member" else "no"
    if isinstance(value, dict):
        if "threshold" in value:
            threshold = value["threshold"]
            found = observed_text("condition", value.get("value"), field=field)
            return f"{found}, threshold {'not measured' if threshold is None else number_text(threshold)}"
        found = f"{value.get('count', 0):,} found"
        return f"{found}, worth {number_text(value['sum'])}" if "sum" in value else found
    if value is None or value == "":
        return "no value"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float | Decimal):
        return number_text(value)
    if isinstance(value, datetime):
        return f"{value:%-d %b %Y %H:%M}"
    if isinstance(value, date):
        return f"{value:%-d %b %Y}"
    if field is not None and field.type == "choice":
        return field.choice_label(str(value))
    return str(value)


@dataclass(frozen=True)
class RuleLine:
    depth: int
    text: str
    path: str


def rule_lines(
    rule: object, *, fields: dict[str, Field], segment_names: dict[str, str] | None = None
) -> list[RuleLine]:
    """The rule as indented lines: a group's heading, then its members one level deeper."""
    lines: list[RuleLine] = []
    _lay_out(rule, "", 0, lines, fields, segment_names or {})
    return lines


def rule_text(rule: object, *, fields: dict[str, Field], segment_names: dict[str, str] | None = None) -> str:
    """`rule_lines` as plain text, two spaces a level (for diffs and e-mails)."""
    return "\n".join(
        "  " * line.depth + line.text for line in rule_lines(rule, fields=fields, segment_names=segment_names)
    )


def _lay_out(rule: object, path: str, depth: int, lines: list, fields: dict, names: dict) -> None:
    if not isinstance(rule, dict):
        lines.append(RuleLine(depth, f"(not a rule: {rule!r})", path))
        return
    for key, heading in (("all", "All of these hold:"), ("any", "Any of these holds:")):
        if isinstance(rule.get(key), list):
            lines.append(RuleLine(depth, heading, path))
            for index, child in enumerate(rule[key]):
                _lay_out(child, f"{_join(path, key)}[{index}]", depth + 1, lines, fields, names)
            return
    if "not" in rule:
        inner, inner_path = rule["not"], _join(path, "not")
        if isinstance(inner, dict) and isinstance(inner.get("any"), list):
            lines.append(RuleLine(depth, "None of these holds:", path))
            for index, child in enumerate(inner["any"]):
                _lay_out(child, f"{inner_path}.any[{index}]", depth + 1, lines, fields, names)
        elif isinstance(inner, dict) and isinstance(inner.get("all"), list):
            lines.append(RuleLine(depth, "Not all of these hold:", path))
            for index, child in enumerate(inner["all"]):
                _lay_out(child, f"{inner_path}.all[{index}]", depth + 1, lines, fields, names)
        elif isinstance(inner, dict) and "not" not in inner:
            lines.append(RuleLine(depth, f"Not: {condition_text(inner, fields=fields, segment_names=names)}", path))
        else:
            lines.append(RuleLine(depth, "Not:", path))
            _lay_out(inner, inner_path, depth + 1, lines, fields, names)
        return
    lines.append(RuleLine(depth, condition_text(rule, fields=fields, segment_names=names), path))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def segment_names(*rules: object) -> dict[str, str]:
    """The names of the segments these rules read through `in_segment`, by slug (one query, or none)."""
    slugs = set().union(*(referenced_slugs(rule) for rule in rules))
    if not slugs:
        return {}
    return dict(Segment.objects.filter(slug__in=slugs).values_list("slug", "name"))


@dataclass(frozen=True)
class DiffRow:
    """One row of two rule versions side by side: `change` is "same", "changed", "removed" or "added"."""

    before: RuleLine | None
    after: RuleLine | None
    change: str


def compare_rules(
    old: object, new: object, *, fields: dict[str, Field], segment_names: dict[str, str] | None = None
) -> list[DiffRow]:
    """Two versions of a rule as readable lines side by side, lines that differ marked (either may be None)."""
    before = rule_lines(old, fields=fields, segment_names=segment_names) if old is not None else []
    after = rule_lines(new, fields=fields, segment_names=segment_names) if new is not None else []
    matcher = difflib.SequenceMatcher(
        a=[(line.depth, line.text) for line in before], b=[(line.depth, line.text) for line in after], autojunk=False
    )
    rows: list[DiffRow] = []
    for tag, a_start, a_end, b_start, b_end in matcher.get_opcodes():
        left, right = before[a_start:a_end], after[b_start:b_end]
        if tag == "equal":
            rows += [DiffRow(a, b, "same") for a, b in zip(left, right, strict=True)]
            continue
        for index in range(max(len(left), len(right))):
            a = left[index] if index < len(left) else None
            b = right[index] if index < len(right) else None
            rows.append(DiffRow(a, b, "changed" if a and b else "removed" if a else "added"))
    return rows
