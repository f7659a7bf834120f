"""Dates in rules: parsing rule values and turning relative operators into bounds from `now`.

Public: `parse_rule_date(value)`, `bounds(type, value) -> (start, end)`,
`relative_bounds(type, op, days, *, now) -> (low, high)`.

Shared by the compiler and the explainer so that both read a date the same way:
- date fields compare with dates; relative operators count from today's date in
  settings.TIME_ZONE (`timezone.localdate(now)`).
- datetime fields compare with instants; a naive datetime is in settings.TIME_ZONE, and a
  date-only value stands for the whole local day: `before D` is before its first instant,
  `after D` is after its last (next midnight minus 1 µs), `between [A, B]` spans A's first instant
  to B's last.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.utils import timezone

ONE_MICROSECOND = timedelta(microseconds=1)


def parse_rule_date(value: str) -> date | datetime:
    """The date (YYYY-MM-DD) or aware datetime a validated rule value stands for."""
    if len(value) == 10:
        return date.fromisoformat(value)
    parsed = datetime.fromisoformat(value)
    return timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def bounds(type: str, value: str) -> tuple[date | datetime, date | datetime]:
    """First and last moment (both inclusive) a rule date value covers for a field of `type`."""
    parsed = parse_rule_date(value)
    if type == "date":
        day = parsed.date() if isinstance(parsed, datetime) else parsed
        return day, day
    if isinstance(parsed, datetime):
        return parsed, parsed
    return _day_start(parsed), _day_start(parsed + timedelta(days=1)) - ONE_MICROSECOND


def relative_bounds(type: str, op: str, days: int, *, now: datetime) -> tuple[date | datetime | None, date | datetime]:
    """(low, high) for in_last_days / in_next_days (both inclusive; low None for more_than_days_ago,
    whose high is exclusive)."""
    origin = timezone.localdate(now) if type == "date" else now
    span = timedelta(days=days)
    if op == "in_last_days":
        return origin - span, origin
    if op == "in_next_days":
        return origin, origin + span
    return None, origin - span
