"""When each kind of review is due: cadences (segment override, category default, the strategy's
default) and the calendar arithmetic, in the project's time zone.

A review is due one cadence after the last completed review of its kind, or after the segment's
creation when there was none, counted in local calendar days. Months keep the day of the month
and fall back to the month's last day when it is shorter: Jan 31 + 1 month is Feb 28, or Feb 29
in a leap year.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Max, Q
from django.utils import timezone

from segments.models import CadenceUnit, Review, ReviewKind, ReviewPolicy, Segment

# The segmentation strategy's cadence: monthly metrics, quarterly boundaries, semi-annual strategy.
STRATEGY_DEFAULTS = {
    ReviewKind.METRICS: (1, CadenceUnit.MONTHS),
    ReviewKind.BOUNDARIES: (3, CadenceUnit.MONTHS),
    ReviewKind.STRATEGY: (6, CadenceUnit.MONTHS),
}


@dataclass(frozen=True)
class Cadence:
    every: int
    unit: str
    source: str  # "segment", "category" or "default": where the cadence was set
    enabled: bool = True
    disabled_reason: str = ""

    @property
    def label(self) -> str:
        if not self.enabled:
            return f"off ({self.disabled_reason})"
        unit = self.unit if self.every != 1 else self.unit.removesuffix("s")
        return f"every {self.every} {unit}"


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or that month's last day when it has fewer days."""
    year, month = divmod(day.month - 1 + months, 12)
    year += day.year
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def due_after(day: date, cadence: Cadence) -> date:
    if cadence.unit == CadenceUnit.MONTHS:
        return add_months(day, cadence.every)
    return day + timedelta(days=cadence.every)


@dataclass(frozen=True)
class Due:
    """One kind of review for one segment: its cadence, last review and next due date (local)."""

    kind: str
    cadence: Cadence
    last_reviewed_at: datetime | None
    due: date | None  # None when the cadence is off

    def overdue_days(self, today: date) -> int:
        return (today - self.due).days if self.due is not None and today > self.due else 0

    def state(self, today: date, *, ahead_days: int) -> str:
        """off, overdue, due (today), coming (within `ahead_days`) or ok."""
        if self.due is None:
            return "off"
        if today > self.due:
            return "overdue"
        if today == self.due:
            return "due"
        return "coming" if (self.due - today).days <= ahead_days else "ok"


def cadences(segments: Iterable[Segment]) -> dict[int, dict[str, Cadence]]:
    """segment id -> kind -> cadence, from one query on the policies."""
    segments = list(segments)
    categories = {s.category for s in segments}
    rows = ReviewPolicy.objects.filter(
        Q(segment_id__in=[s.pk for s in segments]) | Q(segment__isnull=True, category__in=categories)
    ).order_by()
    by_segment, by_category = {}, {}
    for row in rows:
        cadence = Cadence(
            row.every, row.unit, "segment" if row.segment_id else "category", row.enabled, row.disabled_reason
        )
        if row.segment_id:
            by_segment[(row.segment_id, row.kind)] = cadence
        else:
            by_category[(row.category, row.kind)] = cadence
    out: dict[int, dict[str, Cadence]] = {}
    for segment in segments:
        out[segment.pk] = {}
        for kind, (every, unit) in STRATEGY_DEFAULTS.items():
            out[segment.pk][kind] = by_segment.get(
                (segment.pk, kind), by_category.get((segment.category, kind), Cadence(every, unit, "default"))
            )
    return out


def last_reviews(segment_ids: list[int]) -> dict[tuple[int, str], datetime]:
    """(segment id, kind) -> time of the last review of that kind, in one query."""
    rows = (
        Review.objects.filter(segment_id__in=segment_ids)
        .order_by()
        .values("segment_id", "kind")
        .annotate(last=Max("reviewed_at"))
    )
    return {(row["segment_id"], row["kind"]): row["last"] for row in rows}


def schedules(segments: Iterable[Segment]) -> dict[int, dict[str, Due]]:
    """segment id -> kind -> Due, for all the segments in two queries."""
    segments = list(segments)
    by_segment = cadences(segments)
    reviewed = last_reviews([s.pk for s in segments])
    zone = timezone.get_current_timezone()  # once: looking it up per date is most of the loop's time
    out: dict[int, dict[str, Due]] = {}
    for segment in segments:
        out[segment.pk] = {}
        for kind, cadence in by_segment[segment.pk].items():
            last = reviewed.get((segment.pk, kind))
            since = timezone.localdate(last or segment.created_at, zone)
            due = due_after(since, cadence) if cadence.enabled else None
            out[segment.pk][kind] = Due(kind, cadence, last, due)
    return out
