"""Keeping the stored analytics current: a backfill over a span of days, and the incremental update
the nightly django-q2 schedule runs, which recomputes only the periods holding a day that gained
activities, deals, lifecycle moves or membership changes since the last run (and new days).

New source rows are found by id above the last run's watermark (each table's primary key, so no
scan of the whole table). Deals closed since the last run are found by their close time. Work is
done one quarter at a time: the quarter, its months, and its weeks and days that need it.

Stored rows of periods that gain nothing new are never rewritten, so a contact deleted after its
outcome keeps its contribution to them; a period that is recomputed is computed from what is
stored then.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import date, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from contacts.models import Activity, Deal, LifecycleChange
from contacts.retention import first_kept_at
from segments.models import AnalyticsGrain, AnalyticsState, MembershipChange, Segment, SegmentStatus

from . import dialect, rollup
from .periods import Period, local_midnight, period_of

SCHEDULE_NAME = "segments: analytics nightly"
NIGHTLY_AT = (2, 30)  # local time the nightly update runs
DEFAULT_HISTORY_DAYS = 365  # what the first run covers when nothing is stored yet


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
    """Recompute every period from `since` to `until` (default today) and move the watermarks on."""
    today = timezone.localdate()
    until = min(until or today, today)
    started, marks = time.monotonic(), _watermarks()
    days = {since + timedelta(days=n) for n in range((until - since).days + 1)}
    count = recompute_days(days)
    _record(marks, through=max(until, _state().computed_through or until), started=started, periods=count)
    return count


def update_analytics(*, now: datetime | None = None) -> dict:
    """The incremental update (also what the nightly schedule runs): periods with new source rows.

    The first run, with nothing stored, backfills DEFAULT_HISTORY_DAYS.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    state = _state()
    if state.computed_through is None:
        count = backfill(today - timedelta(days=DEFAULT_HISTORY_DAYS - 1), until=today)
        return {"periods": count, "days": DEFAULT_HISTORY_DAYS, "backfill": True}
    started, marks = time.monotonic(), _watermarks()
    days = _dirty_days(state, marks, today=today)
    count = recompute_days(days)
    _record(marks, through=today, started=started, periods=count)
    return {"periods": count, "days": len(days), "backfill": False}


def _state() -> AnalyticsState:
    state = AnalyticsState.objects.order_by("pk").first()
    return state or AnalyticsState.objects.create()


def _watermarks() -> dict:
    """The newest id of each source table and the time, read before computing: rows written
    during the run are picked up by the next one."""
    return {
        "activity_id": Activity.objects.aggregate(top=Max("pk"))["top"] or 0,
        "change_id": MembershipChange.objects.aggregate(top=Max("pk"))["top"] or 0,
        "lifecycle_id": LifecycleChange.objects.aggregate(top=Max("pk"))["top"] or 0,
        "deal_id": Deal.objects.aggregate(top=Max("pk"))["top"] or 0,
        "at": timezone.now(),
    }


def _record(marks: dict, *, through: date, started: float, periods: int) -> None:
    with transaction.atomic():
        state = _state()
        state.activity_id = marks["activity_id"]
        state.change_id = marks["change_id"]
        state.lifecycle_id = marks["lifecycle_id"]
        state.deal_id = marks["deal_id"]
        state.deals_checked_at = marks["at"]
        state.computed_through = through
        state.last_run_at = timezone.now()
        state.last_run_seconds = round(time.monotonic() - started, 3)
        state.last_run_periods = periods
        state.save()


def _days(sql: str, params: list) -> set[date]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {dialect.as_date(day) for (day,) in cursor.fetchall() if day is not None}


def _dirty_days(state: AnalyticsState, marks: dict, *, today: date) -> set[date]:
    """Days that gained source rows since the last run, the days since it, and today."""
    local = dialect.local_date
    activity, change = Activity._meta.db_table, MembershipChange._meta.db_table
    lifecycle, deal = LifecycleChange._meta.db_table, Deal._meta.db_table
    since_checked = dialect.instant(state.deals_checked_at or local_midnight(today))
    days = _days(
        f"""SELECT DISTINCT {local("occurred_at")} FROM {activity} WHERE id > %s AND id <= %s
        UNION SELECT DISTINCT {local("changed_at")} FROM {lifecycle} WHERE id > %s AND id <= %s
        UNION SELECT DISTINCT {local("created_at")} FROM {deal} WHERE id > %s AND id <= %s
        UNION SELECT DISTINCT {local("closed_at")} FROM {deal}
            WHERE closed_at IS NOT NULL AND ((id > %s AND id <= %s) OR closed_at >= %s)""",
        [
            state.activity_id,
            marks["activity_id"],
            state.lifecycle_id,
            marks["lifecycle_id"],
            state.deal_id,
            marks["deal_id"],
            state.deal_id,
            marks["deal_id"],
            since_checked,
        ],
    )
    # A membership change moves the sizes of every day after it, up to today.
    moved = _days(
        f"SELECT MIN({local('changed_at')}) FROM {change} WHERE id > %s AND id <= %s",
        [state.change_id, marks["change_id"]],
    )
    first_new = (state.computed_through or today) + timedelta(days=1)
    for start in [*moved, min(first_new, today)]:
        days |= {start + timedelta(days=n) for n in range((today - start).days + 1)}
    return {day for day in days if day <= today}
