"""Keeping the stored analytics current: a backfill over a span of days, and the incremental update
the nightly django-q2 schedule runs, which recomputes only the periods holding a day whose
activities, deals, lifecycle moves or membership changes changed since the last run (and new days).

Changes are found from `AnalyticsDirtyHour` rows, written by database triggers on the four source
tables in the transaction that makes the change (migration 0018): the UTC hour of each time a row
had or has (activity occurred_at; lifecycle changed_at; deal created_at and closed_at; membership
changed_at, with its segment) on insert and update (old and new values), on every write path (ORM,
bulk ingest, raw INSERT ... SELECT). Deletes are not recorded (migration 0019), nor a deal whose
contact is only unset, as deleting its contact does: deleting never rewrites analytics history.
The update claims the rows committed so far (committed before it computes anything), widens each
hour to the local days it can touch in the project's time zone (a membership change: every day
from it to today), recomputes the periods holding them, then deletes the rows it claimed by their
ids. A row committed later, whatever id or time its change had, stays unclaimed for the next run; a
run that fails leaves its claimed rows for the next one.

Decided: this replaces the id watermarks of AnalyticsState, which missed a transaction committing
after a run had read the newest id (its ids fell below the next run's lower bound) and every update
or delete (a deal won with a past close time, moved away from won, deleted). Not PendingChange
(contacts/changes.py): it queues contacts, not times, for the catch-up task to claim, only from
the code paths that call contacts_changed, and not for membership changes. A run with nothing
claimed recomputes today (and any day since the last run) only. Rollups therefore equal what a
backfill of the same span computes from what is stored, except after deletions: as issue 22 asks,
a contact deleted after its outcome keeps its contribution to the periods it counted in (a period
recomputed later for another change is computed from what is stored then).

Work is done one quarter at a time: the quarter, its months, and its weeks and days that need it.
Stored rows of periods with no changed row are never rewritten.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from contacts.retention import first_kept_at
from segments.models import (
    AnalyticsDirtyHour,
    AnalyticsGrain,
    AnalyticsSource,
    AnalyticsState,
    Segment,
    SegmentStat,
    SegmentStatus,
)

from . import rollup
from .periods import Period, period_of

SCHEDULE_NAME = "segments: analytics nightly"
NIGHTLY_AT = (2, 30)  # local time the nightly update runs
DEFAULT_HISTORY_DAYS = 365  # what the first run covers when nothing is stored yet
HOUR = timedelta(hours=1)
DELETE_BATCH = 5000  # ids per DELETE (SQLite's limit on parameters)


def analysed_segment_ids() -> list[int]:
    """Every segment except archived ones gets rollups (paused segments still have members)."""
    return list(Segment.objects.exclude(status=SegmentStatus.ARCHIVED).order_by("pk").values_list("pk", flat=True))


def periods_for(days: set[date]) -> dict[Period, list[Period]]:
    """The periods to recompute for these days, grouped by the quarter they start in: each
    quarter and month holding a day, and the weeks and days themselves.

    With activity retention on, periods that begin before the first instant kept are left out:
    they were computed while their activities were stored, and would now be computed from fewer
    (contacts/retention.py drops a month only once the rollups have read it)."""
    kept_from = first_kept_at()
    groups: dict[Period, set[Period]] = defaultdict(set)
    for day in days:
        quarter = period_of(day, AnalyticsGrain.QUARTER)
        for grain in AnalyticsGrain.values:
            period = period_of(day, grain)
            if kept_from is None or period.start_at >= kept_from:
                groups[quarter].add(period)
    return {quarter: sorted(periods) for quarter, periods in sorted(groups.items()) if periods}


def recompute_days(days: set[date], *, segment_ids: list[int] | None = None) -> int:
    """Recompute and store every period holding one of `days`; returns how many periods."""
    ids = analysed_segment_ids() if segment_ids is None else segment_ids
    groups = list(periods_for(days).values())
    rollup.compute_and_store_groups(groups, segment_ids=ids)
    return sum(len(periods) for periods in groups)


def backfill(since: date, *, until: date | None = None) -> int:
    """Recompute every period from `since` to `until` (default today) and let go of the changed
    rows whose stored periods were all among them; the others wait for the update."""
    today = timezone.localdate()
    until = min(until or today, today)
    started, claimed = time.monotonic(), _claim(today)
    days = {since + timedelta(days=n) for n in range((until - since).days + 1)}
    groups = periods_for(days)
    count = recompute_days(days)
    _done(_covered(claimed, {period for periods in groups.values() for period in periods}))
    _record(through=max(until, _state().computed_through or until), started=started, periods=count)
    return count


def update_analytics(*, now: datetime | None = None) -> dict:
    """The incremental update (also what the nightly schedule runs): periods with changed source rows.

    The first run, with nothing stored, backfills DEFAULT_HISTORY_DAYS.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    state = _state()
    if state.computed_through is None:
        count = backfill(today - timedelta(days=DEFAULT_HISTORY_DAYS - 1), until=today)
        return {"periods": count, "days": DEFAULT_HISTORY_DAYS, "backfill": True}
    started, claimed = time.monotonic(), _claim(today)
    days = _dirty_days(claimed, state, today=today, start=history_start())
    count = recompute_days(days)
    _done(claimed)
    _record(through=today, started=started, periods=count)
    return {"periods": count, "days": len(days), "backfill": False}


def _state() -> AnalyticsState:
    state = AnalyticsState.objects.order_by("pk").first()
    return state or AnalyticsState.objects.create()


def _record(*, through: date, started: float, periods: int) -> None:
    with transaction.atomic():
        state = _state()
        state.computed_through = through
        state.last_run_at = timezone.now()
        state.last_run_seconds = round(time.monotonic() - started, 3)
        state.last_run_periods = periods
        state.save()


@dataclass(frozen=True)
class Changed:
    """The local days a claimed row touches (a membership change's run on to today)."""

    ids: list[int]
    days: set[date]


def _claim(today: date) -> list[Changed]:
    """Claim every changed hour committed by now and read the claimed ones (also those a failed
    run left), grouped by the days they touch. The claim commits before anything is computed: a
    change committed after it keeps its row unclaimed for the next run, and on SQLite a writer
    stops adding to an hour once it is claimed (migration 0018)."""
    with transaction.atomic():
        AnalyticsDirtyHour.objects.filter(claimed=False).update(claimed=True)
    analysed = set(analysed_segment_ids())
    grouped: dict[frozenset[date], list[int]] = defaultdict(list)
    rows = AnalyticsDirtyHour.objects.filter(claimed=True).values_list("pk", "source", "hour", "segment_id")
    for pk, source, hour, segment_id in rows.iterator():
        days = {timezone.localdate(hour), timezone.localdate(hour + HOUR - timedelta(microseconds=1))}
        if source == AnalyticsSource.MEMBERSHIP:
            # A membership change moves the sizes of every day after it, up to today; a segment
            # deleted or archived since has no rollups to move.
            first = min(days) if segment_id in analysed else today + timedelta(days=1)
            days = {first + timedelta(days=n) for n in range((today - first).days + 1)}
        grouped[frozenset(days)].append(pk)
    return [Changed(ids, set(days)) for days, ids in grouped.items()]


def _covered(claimed: list[Changed], recomputed: set[Period]) -> list[Changed]:
    """The claimed rows none of whose days lies in a stored period other than those recomputed."""
    others = [
        [period for periods in periods_for(changed.days).values() for period in periods if period not in recomputed]
        for changed in claimed
    ]
    starts = {period.first for periods in others for period in periods}
    # Every stored period has the whole database's row.
    stored = set(SegmentStat.objects.filter(segment=None, period_start__in=starts).values_list("grain", "period_start"))
    return [
        changed
        for changed, periods in zip(claimed, others, strict=True)
        if not any((period.grain, period.first) in stored for period in periods)
    ]


def _done(claimed: list[Changed]) -> None:
    """Delete the claimed rows by their ids: rows committed meanwhile stay for the next run."""
    ids = [pk for changed in claimed for pk in changed.ids]
    for first in range(0, len(ids), DELETE_BATCH):
        AnalyticsDirtyHour.objects.filter(pk__in=ids[first : first + DELETE_BATCH]).delete()


def history_start() -> date | None:
    """The first day of the earliest stored period (a quarter's, unless retention cut into it)."""
    return SegmentStat.objects.aggregate(first=Min("period_start"))["first"]


def _dirty_days(claimed: list[Changed], state: AnalyticsState, *, today: date, start: date | None) -> set[date]:
    """Days touched by changed rows, the days since the last run, and today (never a day after it).
    Days before the stored history are left out: no stored period holds them, and the history
    begins where a backfill began it (the first run's covers a year)."""
    days = {day for changed in claimed for day in changed.days if start is None or day >= start}
    first_new = min((state.computed_through or today) + timedelta(days=1), today)
    days |= {first_new + timedelta(days=n) for n in range((today - first_new).days + 1)}
    return {day for day in days if day <= today}
