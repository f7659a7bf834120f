"""Check a rule against the rule language and the field registry before anything runs it.

Public: `RuleError`, `InvalidRule`, `validate_rule(rule, *, segment_slugs=None, fields=None)
-> list[RuleError]`, `errors_before_saving(rule, *, segment_slugs=None)`, `retention_errors(rule, *, months)`,
`referenced_slugs(rule) -> set[str]`, `EVENT_OPS`, `EVENT_FILTERS`.

`validate_rule` collects every error, not just the first. Each names its JSON path
(`all[1].any[0].op`; the empty path is the rule itself) and says what is allowed.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TypeGuard

from django.conf import settings

from contacts.models import ActivityKind
from contacts.retention import retained_days
from segments.models import Segment
from segments.rules.clock import bounds
from segments.rules.registry import Field, get_fields

EVENT_OPS = ("performed", "not_performed", "count_gte", "count_lte", "count_eq", "sum_gte")
EVENT_FILTERS = ("kind", "topic", "product", "campaign", "url_contains")
MAX_DEPTH = 20
MAX_NUMBER = 10**15  # beyond this a value could overflow SQLite's 64-bit integers or lose precision
MAX_DAYS = 36_500  # a hundred years; `now - 10**9 days` is before year 1 and overflows every date type

_NO_VALUE_OPS = {"is_set", "is_not_set", "is_true", "is_false"}
_DAY_OPS = {"in_last_days", "in_next_days", "more_than_days_ago"}
_PERCENT_OPS = {"top_percent", "bottom_percent"}
_LIST_OPS = {"in", "not_in", "contains_any", "contains_all", "contains_none"}
_CONDITION_KEYS = ("field", "op", "value")
_EVENT_KEYS = ("event", "op", "value", "within_days")
_RULE_SHAPES = (
    '{"all": [...]}, {"any": [...]}, {"not": {...}}, {"field", "op", "value"}, '
    '{"event": {...}, "op", ...} or {"in_segment": "<slug>"}'
)


@dataclass(frozen=True)
class RuleError:
    path: str
    message: str
    code: str

    def __str__(self) -> str:
        return f"{self.path or 'rule'}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "code": self.code}


class InvalidRule(ValueError):
    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(error) for error in errors))


def referenced_slugs(rule: object) -> set[str]:
    """Slugs of every segment the rule reads through `in_segment`, however deep.

    It runs before validation (to look the slugs up), so it walks with a stack instead of
    recursing: an unvalidated rule may nest deeper than the interpreter's stack.
    """
    slugs: set[str] = set()
    pending = [rule]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            slug = node.get("in_segment")
            if isinstance(slug, str) and "\x00" not in slug:
                slugs.add(slug)
            pending.extend(node[key] for key in ("all", "any", "not") if key in node)
    return slugs


def validate_rule(
    rule: object, *, segment_slugs: set[str] | None = None, fields: dict[str, Field] | None = None
) -> list[RuleError]:
    """Every error in `rule`; an empty list means compile_rule and explain accept it.

    Unknown `in_segment` slugs are looked up in the database unless `segment_slugs` is given.
    """
    checker = _Checker(fields if fields is not None else get_fields())
    checker.check(rule, "", depth=0)
    slugs = referenced_slugs(rule)
    if slugs:
        known = segment_slugs if segment_slugs is not None else _existing_slugs(slugs)
        for path, slug in checker.slug_paths:
            if slug not in known:
                checker.add(path, f"no segment has the slug {slug!r}.", "unknown_segment")
    return checker.errors


def errors_before_saving(rule: object, *, segment_slugs: set[str] | None = None) -> list[RuleError]:
    """What keeps a rule from being saved: validate_rule's errors, else the conditions that read
    further back than activity retention keeps (retention_errors)."""
    return validate_rule(rule, segment_slugs=segment_slugs) or retention_errors(
        rule, months=settings.ACTIVITY_RETENTION_MONTHS
    )


def retention_errors(rule: object, *, months: int) -> list[RuleError]:
    """Event conditions of a valid rule whose `within_days` reaches further back than activity
    retention keeps (ACTIVITY_RETENTION_MONTHS, contacts/retention.py): refused when a segment is
    saved, since the activities they would count are dropped. Conditions over all time count the
    activities kept and are accepted. Not part of validate_rule: rules stored before retention was
    turned on still compile (and hold retention back until edited)."""
    if not months:
        return []
    kept = retained_days(months)
    errors: list[RuleError] = []

    def walk(node: object, path: str) -> None:
        if not isinstance(node, dict):
            return
        for key in ("all", "any"):
            for index, child in enumerate(node.get(key) or []):
                walk(child, f"{_join(path, key)}[{index}]")
        if "not" in node:
            walk(node["not"], _join(path, "not"))
        days = node.get("within_days")
        if "event" in node and isinstance(days, int) and _is_day_count(days) and days > kept:
            errors.append(
                RuleError(
                    _join(path, "within_days"),
                    f"within_days {days} reaches past the activities kept: ACTIVITY_RETENTION_MONTHS={months} "
                    f"keeps as few as {kept} days, so use at most {kept} (or leave it out for all activities kept).",
                    "past_retention",
                )
            )

    walk(rule, "")
    return errors


def _existing_slugs(slugs: set[str]) -> set[str]:
    return set(Segment.objects.filter(slug__in=slugs).values_list("slug", flat=True))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_number(value: object) -> TypeGuard[int | float | Decimal]:
    if isinstance(value, bool):
        return False
    if isinstance(value, Decimal):
        return value.is_finite() and abs(value) <= MAX_NUMBER
    return isinstance(value, int | float) and math.isfinite(value) and abs(value) <= MAX_NUMBER


def _is_day_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_DAYS


def _decimals(value: int | float | Decimal) -> int:
    exponent = Decimal(str(value)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _parse_date(value: object, *, with_time: bool) -> date | datetime | None:
    """An ISO date (or, for datetime fields, an ISO datetime) or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value) if with_time else None
    except ValueError:
        return None


def _choices_text(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(values)


class _Checker:
    def __init__(self, fields: dict[str, Field]) -> None:
        self.fields = fields
        self.errors: list[RuleError] = []
        self.slug_paths: list[tuple[str, str]] = []

    def add(self, path: str, message: str, code: str) -> None:
        self.errors.append(RuleError(path, message, code))

    def check(self, node: object, path: str, *, depth: int) -> None:
        if depth > MAX_DEPTH:
            self.add(path, f"rules nest at most {MAX_DEPTH} groups deep.", "too_deep")
        elif not isinstance(node, dict):
            self.add(path, f"expected a rule object, one of {_RULE_SHAPES}.", "not_object")
        elif not node:
            self.add(path, "choose a field, an activity or a segment.", "empty_condition")
        elif {"all", "any", "not"} & node.keys():
            self.check_group(node, path, depth=depth)
        elif "field" in node:
            self.check_keys(node, path, _CONDITION_KEYS, "a condition")
            self.check_condition(node, path)
        elif "event" in node:
            self.check_keys(node, path, _EVENT_KEYS, "an event condition")
            self.check_event(node, path)
        elif "in_segment" in node:
            self.check_keys(node, path, ("in_segment",), "a membership condition")
            self.check_membership(node, path)
        else:
            self.add(path, f"expected one of {_RULE_SHAPES}; got keys {sorted(node)}.", "unknown_rule")

    def check_keys(self, node: dict, path: str, allowed: tuple[str, ...], what: str) -> None:
        for key in node:
            if key not in allowed:
                self.add(_join(path, str(key)), f"unknown key in {what}; allowed: {', '.join(allowed)}.", "unknown_key")

    def check_group(self, node: dict, path: str, *, depth: int) -> None:
        keys = [key for key in ("all", "any", "not") if key in node]
        self.check_keys(node, path, (keys[0],), f"an {keys[0]!r} group (one of all, any, not per object)")
        key = keys[0]
        children = node[key]
        if key == "not":
            self.check(children, _join(path, "not"), depth=depth + 1)
        elif not isinstance(children, list):
            self.add(_join(path, key), f"{key!r} takes a list of rules.", "not_list")
        elif not children:
            self.add(_join(path, key), f"an empty {key!r} group; give it at least one rule.", "empty_group")
        else:
            for index, child in enumerate(children):
                self.check(child, f"{_join(path, key)}[{index}]", depth=depth + 1)

    def check_condition(self, node: dict, path: str) -> None:
        name = node["field"]
        field = self.fields.get(name) if isinstance(name, str) else None
        if field is None:
            self.add(_join(path, "field"), f"unknown field {name!r}. {self.nearest_fields(name)}", "unknown_field")
            return
        op = node.get("op")
        if op not in field.operators:
            self.add(
                _join(path, "op"),
                f"operator {op!r} does not apply to {field.type} field {field.path!r}; "
                f"allowed: {', '.join(field.operators)}.",
                "bad_operator",
            )
            return
        message = self.value_problem(field, op, node.get("value"), has_value="value" in node)
        if message:
            self.add(_join(path, "value"), message, "bad_value")

    def nearest_fields(self, name: object) -> str:
        """The three known fields closest to `name` by path or label, as a hint."""
        by_words = {field.label.lower(): path for path, field in self.fields.items()}
        candidates = {**{path: path for path in self.fields}, **by_words}
        close = difflib.get_close_matches(str(name).lower(), candidates, n=6, cutoff=0.5)
        paths = list(dict.fromkeys(candidates[match] for match in close))[:3]
        if not paths:
            return "No field has a similar name; the rule builder lists them all."
        named = [f"{path!r} ({self.fields[path].label})" for path in paths]
        return f"Did you mean {named[0] if len(named) == 1 else ', '.join(named[:-1]) + ' or ' + named[-1]}?"

    def value_problem(self, field: Field, op: str, value: object, *, has_value: bool) -> str | None:
        """Why `value` does not fit `op` on `field`, or None."""
        if op in _NO_VALUE_OPS:
            return f"{op} takes no value." if value is not None else None
        if not has_value:
            return f"{op} needs a value."
        if value in ("", None) and (field.type == "number" or op in _DAY_OPS | _PERCENT_OPS):
            return "enter a number."
        if op in _DAY_OPS:
            return None if _is_day_count(value) else f"{op} takes a whole number of days from 1 to {MAX_DAYS:,}."
        if op in _PERCENT_OPS:
            if not _is_number(value) or not 0 < value <= 100 or _decimals(value) > 2:
                return f"{op} takes a percentage greater than 0 and at most 100 (up to 2 decimals)."
            return None
        if op == "between":
            return self.between_problem(field, value)
        if op in _LIST_OPS:
            if value == [] and field.type == "choice":
                return "choose at least one value."
            if not isinstance(value, list) or not value:
                return f"{op} takes a non-empty list of {self.item_kind(field)}."
            problems = (self.item_problem(field, item) for item in value)
            return next((f"item {i}: {p}" for i, p in enumerate(problems) if p), None)
        return self.item_problem(field, value)

    def item_kind(self, field: Field) -> str:
        if field.type == "choice":
            return f"choices ({_choices_text(field.choices)})"
        return "non-empty texts"

    def item_problem(self, field: Field, value: object) -> str | None:
        if field.type in ("text", "tags"):
            if not isinstance(value, str) or not value:
                return "expected a non-empty text (use is_set / is_not_set for presence)."
            if "\x00" in value:
                return "text may not contain NUL characters."
        elif field.type == "choice":
            if value in ("", None):
                return "choose a value."
            if value not in field.choices:
                return f"{value!r} is not one of {_choices_text(field.choices)}."
        elif field.type == "number":
            if value in ("", None):
                return "enter a number."
            if not _is_number(value):
                return f"expected a number between -{MAX_NUMBER:,} and {MAX_NUMBER:,}, got {value!r}."
        elif field.type in ("date", "datetime"):
            return self.date_problem(field, value)
        return None

    def date_problem(self, field: Field, value: object) -> str | None:
        if _parse_date(value, with_time=field.type == "datetime") is not None:
            return None
        if field.type == "date":
            return f"expected an ISO date YYYY-MM-DD, got {value!r}."
        return f"expected an ISO date YYYY-MM-DD or datetime YYYY-MM-DDTHH:MM[:SS][+HH:MM], got {value!r}."

    def between_problem(self, field: Field, value: object) -> str | None:
        if field.type not in ("number", "date", "datetime"):
            return f"between does not apply to {field.type} fields."
        if not isinstance(value, list) or len(value) != 2:
            return "between takes [low, high], both ends included."
        problem = self.item_problem(field, value[0]) or self.item_problem(field, value[1])
        if problem:
            return problem
        low, high = value
        if field.type != "number":
            low, high = bounds(field.type, low)[0], bounds(field.type, high)[1]
        return f"between takes [low, high] with low <= high; got {value!r}." if low > high else None

    def check_event(self, node: dict, path: str) -> None:
        self.check_event_filters(node["event"], _join(path, "event"))
        op = node.get("op")
        if op not in EVENT_OPS:
            self.add(
                _join(path, "op"),
                f"operator {op!r} does not apply to events; allowed: {', '.join(EVENT_OPS)}.",
                "bad_operator",
            )
        else:
            message = self.event_value_problem(op, node.get("value"))
            if message:
                self.add(_join(path, "value"), message, "bad_value")
        if "within_days" in node and not _is_day_count(node["within_days"]):
            self.add(
                _join(path, "within_days"),
                f"within_days takes a whole number of days from 1 to {MAX_DAYS:,} (leave it out for all time).",
                "bad_value",
            )

    def check_event_filters(self, filters: object, path: str) -> None:
        if not isinstance(filters, dict):
            self.add(path, f"event takes an object of filters: {', '.join(EVENT_FILTERS)}.", "not_object")
            return
        self.check_keys(filters, path, EVENT_FILTERS, "event filters")
        kinds = list(ActivityKind.values)
        if "kind" not in filters:
            self.add(_join(path, "kind"), f"an event needs a kind, one of {', '.join(kinds)}.", "missing_kind")
        elif filters["kind"] not in kinds:
            self.add(
                _join(path, "kind"),
                f"unknown activity kind {filters['kind']!r}; allowed: {', '.join(kinds)}.",
                "unknown_kind",
            )
        for key in EVENT_FILTERS[1:]:
            if key in filters and (not isinstance(filters[key], str) or not filters[key] or "\x00" in filters[key]):
                self.add(_join(path, key), f"{key} takes a non-empty text (without NUL characters).", "bad_value")

    def event_value_problem(self, op: str, value: object) -> str | None:
        if op in ("performed", "not_performed"):
            return f"{op} takes no value." if value is not None else None
        if value in ("", None):
            return "enter a number."
        if op == "sum_gte":
            if not _is_number(value) or _decimals(value) > 2:
                return "sum_gte takes an amount (a number with up to 2 decimals)."
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{op} takes a whole number of activities, 0 or more."
        return None

    def check_membership(self, node: dict, path: str) -> None:
        slug = node["in_segment"]
        if slug == "":
            self.add(_join(path, "in_segment"), "choose a segment.", "bad_value")
        elif not isinstance(slug, str) or "\x00" in slug:
            self.add(_join(path, "in_segment"), "in_segment takes a segment slug (text without NUL).", "bad_value")
        else:
            self.slug_paths.append((_join(path, "in_segment"), slug))
