"""The explainer's answer in words a Sales rep reads: "Lead score at least 50 (80)".

Walks a rule and its explanation tree side by side (children come in rule order) and describes
the leaf conditions that hold, using the registry's field labels and the contact's values.
"""

from contacts.models import ActivityKind
from segments.rules.explainer import Node
from segments.rules.registry import Field

OPERATOR_WORDS = {
    "eq": "is",
    "neq": "is not",
    "in": "is one of",
    "not_in": "is none of",
    "contains": "contains",
    "starts_with": "starts with",
    "ends_with": "ends with",
    "gt": "above",
    "gte": "at least",
    "lt": "below",
    "lte": "at most",
    "between": "between",
    "top_percent": "in the top {}%",
    "bottom_percent": "in the bottom {}%",
    "is_true": "is yes",
    "is_false": "is no",
    "before": "before",
    "after": "after",
    "in_last_days": "in the last {} days",
    "in_next_days": "in the next {} days",
    "more_than_days_ago": "more than {} days ago",
    "contains_any": "includes any of",
    "contains_all": "includes all of",
    "contains_none": "includes none of",
    "is_set": "is set",
    "is_not_set": "is not set",
}
EVENT_WORDS = {
    "performed": "{kind}",
    "not_performed": "no {kind}",
    "count_gte": "{kind} at least {value} times",
    "count_lte": "{kind} at most {value} times",
    "count_eq": "{kind} exactly {value} times",
    "sum_gte": "{kind} worth at least {value}",
}
KIND_LABELS = dict(ActivityKind.choices)


def reasons(rule: dict, node: Node, fields: dict[str, Field]) -> list[str]:
    """Plain sentences for the leaf conditions that make `node` true (none when it is false)."""
    if not node.result:
        return []
    for key in ("all", "any"):
        if key in rule:
            return [
                text
                for child, sub in zip(rule[key], node.children, strict=True)
                for text in reasons(child, sub, fields)
            ]
    if "not" in rule:
        return [f"not: {describe(rule['not'], node.children[0], fields)}"]
    return [describe(rule, node, fields)]


def describe(rule: dict, node: Node, fields: dict[str, Field]) -> str:
    if "in_segment" in rule:
        return f"{'member' if node.result else 'not a member'} of {rule['in_segment']}"
    if "event" in rule:
        return _event(rule, node)
    field = fields.get(rule["field"])
    label = field.label if field else rule["field"]
    op, value = rule["op"], rule.get("value")
    words = OPERATOR_WORDS.get(op, op)
    if "{}" in words:
        condition = f"{label} {words.format(value)}"
    elif value is None:
        condition = f"{label} {words}"
    else:
        condition = f"{label} {words} {_value_text(op, value)}"
    return f"{condition} ({_value_text('', node.value) if node.value not in (None, '') else 'no value'})"


def _event(rule: dict, node: Node) -> str:
    filters = rule["event"]
    kind = KIND_LABELS.get(filters["kind"], filters["kind"]).lower()
    text = EVENT_WORDS.get(rule["op"], "{kind}").format(kind=kind, value=rule.get("value"))
    about = [filters[key] for key in ("topic", "product", "campaign") if filters.get(key)]
    if about:
        text += f" about {', '.join(about)}"
    text += f" in the last {rule['within_days']} days" if "within_days" in rule else " ever"
    count = node.value.get("count") if isinstance(node.value, dict) else None
    return f"{text[:1].upper()}{text[1:]}" + (f" ({count} found)" if count is not None else "")


def _value_text(op: str, value: object) -> str:
    if op == "between" and isinstance(value, list) and len(value) == 2:
        return f"{value[0]} and {value[1]}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | int):
        return f"{value:,}"
    return str(value)
