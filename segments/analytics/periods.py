"""Calendar periods the analytics are read over: a day, an ISO week, a month, a quarter or any range.

A period is a half-open span of local days [first, last + 1 day) in the project's time zone; its
instants run from the first day's midnight to the midnight after the last day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.utils import timezone

from contacts.retention import first_kept_at
from segments.models import AnalyticsGrain

MAX_DAYS = 3 * 366 + 1  # "at most three years": 2024-01-01..2026-12-31 is allowed, a day more is not


class BadParameter(ValueError):
    """A period that cannot be read; `parameter` names the input it came from."""

    def __init__(self, message: str, *, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True, order=True)
class Period:
    first: date
    last: date  # inclusive
    grain: str | None = None  # set when the period is one stored calendar period

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def end(self) -> date:
        """The day after the last one: the period's exclusive end."""
        return self.last + timedelta(days=1)

    @property
    def start_at(self) -> datetime:
        return local_midnight(self.first)

    @property
    def end_at(self) -> datetime:
        return local_midnight(self.end)

    @property
    def label(self) -> str:
        if self.grain == AnalyticsGrain.QUARTER:
            return f"{self.first.year}Q{(self.first.month - 1) // 3 + 1}"
        if self.grain == AnalyticsGrain.MONTH:
            return f"{self.first:%Y-%m}"
        if self.grain == AnalyticsGrain.WEEK:
            year, week, _ = self.first.isocalendar()
            return f"{year}-W{week:02d}"
        if self.grain == AnalyticsGrain.DAY:
            return self.first.isoformat()
        return f"{self.first.isoformat()}..{self.last.isoformat()}"

    def previous(self) -> Period:
        """The period of the same grain (or length) just before this one."""
        if self.grain:
            return period_of(self.first - timedelta(days=1), self.grain)
        return Period(self.first - timedelta(days=self.days), self.first - timedelta(days=1))

    def day_list(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range(self.days)]


def local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def period_of(day: date, grain: str) -> Period:
    """The calendar period of `grain` that contains `day`."""
    if grain == AnalyticsGrain.DAY:
        return Period(day, day, grain)
    if grain == AnalyticsGrain.WEEK:
        first = day - timedelta(days=day.weekday())
        return Period(first, first + timedelta(days=6), grain)
    if grain == AnalyticsGrain.MONTH:
        first = day.replace(day=1)
    elif grain == AnalyticsGrain.QUARTER:
        first = date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    else:
        raise ValueError(f"unknown grain {grain!r}")
    months = 1 if grain == AnalyticsGrain.MONTH else 3
    year, month = divmod(first.month - 1 + months, 12)
    return Period(first, date(first.year + year, month + 1, 1) - timedelta(days=1), grain)


def periods_between(first: date, last: date, grain: str) -> list[Period]:
    """Every period of `grain` that has a day in first..last, in order."""
    periods, day = [], first
    while day <= last:
        period = period_of(day, grain)
        periods.append(period)
        day = period.end
    return periods


def last_full_quarter(today: date) -> Period:
    return period_of(period_of(today, AnalyticsGrain.QUARTER).first - timedelta(days=1), AnalyticsGrain.QUARTER)


QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$", re.IGNORECASE)
MONTH = re.compile(r"^(\d{4})-(\d{2})$")
WEEK = re.compile(r"^(\d{4})-?W(\d{2})$", re.IGNORECASE)
RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
FORMS = "2026Q3, 2026-07, 2026-W27, 2026-07-14 or 2026-07-01..2026-09-30"


def parse_period(text: str, *, parameter: str = "period") -> Period:
    """A period from its written form; a BadParameter naming `parameter` says what was wrong."""
    text = (text or "").strip()
    try:
        if match := QUARTER.match(text):
            return period_of(date(int(match[1]), int(match[2]) * 3 - 2, 1), AnalyticsGrain.QUARTER)
        if match := MONTH.match(text):
            return period_of(date(int(match[1]), int(match[2]), 1), AnalyticsGrain.MONTH)
        if match := WEEK.match(text):
            return period_of(date.fromisocalendar(int(match[1]), int(match[2]), 1), AnalyticsGrain.WEEK)
        if match := RANGE.match(text):
            return checked_range(date.fromisoformat(match[1]), date.fromisoformat(match[2]), parameter=parameter)
        if len(text) == 10:
            return period_of(date.fromisoformat(text), AnalyticsGrain.DAY)
    except ValueError as error:
        if isinstance(error, BadParameter):
            raise
        raise BadParameter(
            f"{parameter}: {text!r} is not a real date or period ({error}).", parameter=parameter
        ) from None
    raise BadParameter(f"{parameter}: {text!r} is not a period; write {FORMS}.", parameter=parameter)


def checked_range(first: date, last: date, *, parameter: str = "period") -> Period:
    """A range of whole days; refused when it ends before it starts, spans more than three years, or
    (not being a calendar period) starts before the activities retention keeps."""
    if last < first:
        raise BadParameter(f"{parameter}: the period ends ({last}) before it starts ({first}).", parameter=parameter)
    period = Period(first, last)
    if period.days > MAX_DAYS:
        raise BadParameter(
            f"{parameter}: {period.days} days is longer than the 3 years ({MAX_DAYS} days) analytics read at once.",
            parameter=parameter,
        )
    for grain in AnalyticsGrain.values:
        if period_of(first, grain) == Period(first, last, grain):
            return Period(first, last, grain)
    # A range that is no calendar period is computed from the activities when asked for; with
    # retention on, those from before the first month kept are gone (calendar periods were stored
    # while they were there: contacts/retention.py drops a month only once the rollups read it).
    kept_from = first_kept_at()
    if kept_from is not None and period.start_at < kept_from:
        kept = timezone.localdate(kept_from)
        raise BadParameter(
            f"{parameter}: the range starts {first}, before {kept}, the first day whose activities are kept "
            f"(ACTIVITY_RETENTION_MONTHS={settings.ACTIVITY_RETENTION_MONTHS}); start it on or after {kept}, "
            "or read the stored weeks, months or quarters before it.",
            parameter=parameter,
        )
    return period
