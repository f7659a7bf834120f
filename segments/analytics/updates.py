"""Keeping the stored analytics current: a backfill over a span of days, and the incremental update
the nightly django-q2 schedule runs over the periods holding a day that gained activities, deals,
lifecycle moves, membership changes or contacts since the last run (and the days since it).

New source rows are found by id above the last run's watermarks (each table's primary key, so no
scan of the whole table); deals closed since the last run by their close time.

How a quarter's group of dirty periods is brought up to date (`_plan`):

- Every stored measure is a sum over members of a figure of each member (members.py), sizes
  included (membership at the start, its change to the end, over the days, joining). Weeks, months
  and quarters ending within KEEP_DAYS of today keep each member's figures (AnalyticsMemberFigure,
  a cache: unlogged on PostgreSQL, rebuilt by any full recompute of the period; a marker row per
  period says it is complete, and a crash that empties the table empties the markers too).
- The touched contacts are those with new source rows, new contacts, and (for fresh periods) every
  contact with a row dated in the period. Their intervals, activities and outcomes are read through
  the contact indexes (rollup.fill_for_contacts) and their figures computed for the group's periods.
- A *tracked* period (figures kept, for the same segments) gets stored row + new figures - kept
  figures (a member with no kept row counted only its membership at the start, unchanged unless a
  new membership change is dated before the period: then the group is recomputed in full; a contact
  new since the last run counted nothing in the whole database). Joins and leaves: stored plus the
  new changes.
- A *fresh* period (every day, and a week, month or quarter begun after the last run's last day)
  starts from the stored size at the end of the day before (days are updated first, in order) and
  adds the touched contacts' figures: every contact with something in it is touched.
- Anything else (a period without kept figures that began before the last run, a new analysed
  segment, a missing day before) recomputes the group in full from scratch, as the backfill does,
  which keeps the figures of recent periods for the next run.

Limits: a Membership row written without its MembershipChange (outside the refresh) is seen by the
next full recompute only; a contact deleted since keeps its kept rows, so its past contribution
stays in the periods updated incrementally (the issue's rule), while a full recompute drops it.
Stored rows of periods that gain nothing new are never rewritten; a period recomputed in full is
computed from what is stored then.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from contacts.models import Activity, Contact, Deal, LifecycleChange
from contacts.retention import first_kept_at
from segments.models import (
    AnalyticsGrain,
    AnalyticsMemberFigure,
    AnalyticsState,
    MembershipChange,
    Segment,
    SegmentChangeStat,
    SegmentResponse,
    SegmentStageStat,
    SegmentStat,
    SegmentStatus,
)

from . import dialect, members, rollup
from .channels import CHANNELS, CONVERSION_STAGES
from .periods import Period, local_midnight, period_of

SCHEDULE_NAME = "segments: analytics nightly"
NIGHTLY_AT = (2, 30)  # local time the nightly update runs
DEFAULT_HISTORY_DAYS = 365  # what the first run covers when nothing is stored yet
KEEP_DAYS = 7  # weeks, months and quarters ending this many days ago or later keep per-member figures


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


def recompute_days(days: set[date], *, segment_ids: list[int] | None = None, today: date | None = None) -> int:
    """Recompute in full and store every period holding one of `days`; returns how many periods.

    With every analysed segment, the week, month and quarter of the last KEEP_DAYS days keep their
    per-member figures for the next incremental update; a recompute of some segments only makes
    their periods untracked (the next update recomputes them in full)."""
    groups = list(periods_for(days).values())
    tracking = _state().member_periods
    _recompute_full(groups, segment_ids, today=today or timezone.localdate(), tracking=tracking)
    with transaction.atomic():
        state = _state()
        state.member_periods = tracking
        state.save(update_fields=["member_periods"])
    return sum(len(periods) for periods in groups)


def _recompute_full(groups: list[list[Period]], segment_ids: list[int] | None, *, today: date, tracking: dict) -> None:
    ids = analysed_segment_ids() if segment_ids is None else segment_ids
    every = segment_ids is None
    oldest = today - timedelta(days=KEEP_DAYS)

    def each(periods: list[Period], computed: rollup.Computed) -> None:
        rollup.store(computed, periods, segment_ids=ids)
        for period in periods:
            tracking.pop(_key(period), None)
        kept = [p for p in periods if every and p.grain != AnalyticsGrain.DAY and p.last >= oldest and p.first <= today]
        if kept:
            with connection.cursor() as cursor:
                members.fill(cursor, kept)
                members.keep(cursor, contacts=None)
            tracking.update({_key(period): ids for period in kept})

    rollup.compute_groups(groups, segment_ids=ids, each=each)


def backfill(since: date, *, until: date | None = None) -> int:
    """Recompute every period from `since` to `until` (default today) and move the watermarks on."""
    today = timezone.localdate()
    until = min(until or today, today)
    started, marks = time.monotonic(), _watermarks()
    days = {since + timedelta(days=n) for n in range((until - since).days + 1)}
    count = recompute_days(days, today=today)
    _record(marks, through=max(until, _state().computed_through or until), started=started, periods=count)
    return count


def update_analytics(*, now: datetime | None = None) -> dict:
    """The incremental update (also what the nightly schedule runs): periods with new source rows.

    The first run, with nothing stored, backfills DEFAULT_HISTORY_DAYS. Each quarter's group of
    periods is updated from the touched contacts when it can be (`_plan`), else recomputed in full.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    state = _state()
    if state.computed_through is None:
        count = backfill(today - timedelta(days=DEFAULT_HISTORY_DAYS - 1), until=today)
        return {"periods": count, "days": DEFAULT_HISTORY_DAYS, "backfill": True}
    started, marks = time.monotonic(), _watermarks()
    days = _dirty_days(state, marks, today=today)
    ids = analysed_segment_ids()
    tracking = dict(state.member_periods)
    first_new_change = _first_new_change_day(state, marks)
    count, full_groups, quick = 0, 0, 0
    for periods in periods_for(days).values():
        plan = _plan(periods, ids, state=state, tracking=tracking, first_new_change=first_new_change)
        if plan is None:
            _recompute_full([periods], None, today=today, tracking=tracking)
            full_groups += 1
        else:
            _update_group(periods, ids, plan=plan, state=state, marks=marks, today=today, tracking=tracking)
            quick += 1
        count += len(periods)
    _forget(tracking, before=today - timedelta(days=KEEP_DAYS))
    _record(marks, through=today, started=started, periods=count, tracking=tracking)
    return {
        "periods": count,
        "days": len(days),
        "backfill": False,
        "full_groups": full_groups,
        "incremental_groups": quick,
    }


def _key(period: Period) -> str:
    return f"{period.grain}:{period.first.isoformat()}"


@dataclass
class Plan:
    tracked: list[Period]  # kept figures: stored measures + (new - kept) of the touched contacts
    fresh: list[
        Period
    ]  # days and periods begun since the last run: the day before's size + every contact with rows in them
    before: dict[tuple[int, date], int]  # stored members_end of the days the fresh periods start after


def _plan(
    periods: list[Period], ids: list[int], *, state: AnalyticsState, tracking: dict, first_new_change: date | None
) -> Plan | None:
    """How to update one quarter's group of periods from the touched contacts, or None to
    recompute it in full: a period with kept figures (for these segments) and no new membership
    change dated before it starts is tracked; a day, or a period that began after the last run's
    last day, is fresh when the day before it has stored sizes (or is updated before it)."""
    kept = _kept_markers()
    tracked, fresh = [], []
    for period in periods:
        key = _key(period)
        if period.grain != AnalyticsGrain.DAY and key in kept and tracking.get(key) == ids:
            if first_new_change is not None and first_new_change < period.first:
                return None
            tracked.append(period)
        elif period.grain == AnalyticsGrain.DAY or (state.computed_through and period.first > state.computed_through):
            fresh.append(period)
        else:
            return None
    fresh_days = {p.first for p in fresh if p.grain == AnalyticsGrain.DAY}
    wanted = {p.first - timedelta(days=1) for p in fresh} - fresh_days
    before = _stored_day_ends(wanted)
    scope = [*ids, rollup.DATABASE]
    if any((segment_id, day) not in before for day in wanted for segment_id in scope):
        return None
    return Plan(tracked=tracked, fresh=fresh, before=before)


def _kept_markers() -> set[str]:
    rows = AnalyticsMemberFigure.objects.filter(segment_id=members.MARKER).values_list("grain", "period_start")
    return {f"{grain}:{first.isoformat()}" for grain, first in rows}


def _stored_day_ends(days: set[date]) -> dict[tuple[int, date], int]:
    rows = SegmentStat.objects.filter(grain=AnalyticsGrain.DAY, period_start__in=days)
    return {
        (segment_id or rollup.DATABASE, first): end
        for segment_id, first, end in rows.values_list("segment_id", "period_start", "members_end")
    }


def _forget(tracking: dict, *, before: date) -> None:
    """Drop the kept figures of periods that ended before `before`."""
    for key in list(tracking):
        grain, first = key.split(":")
        if period_of(date.fromisoformat(first), grain).last < before:
            del tracking[key]
            AnalyticsMemberFigure.objects.filter(grain=grain, period_start=date.fromisoformat(first)).delete()
    known = set(tracking)
    stale = _kept_markers() - known
    for key in stale:
        grain, first = key.split(":")
        AnalyticsMemberFigure.objects.filter(grain=grain, period_start=date.fromisoformat(first)).delete()


TOUCHED = "analytics_touched"


def _update_group(
    periods: list[Period],
    ids: list[int],
    *,
    plan: Plan,
    state: AnalyticsState,
    marks: dict,
    today: date,
    tracking: dict,
) -> None:
    """Update one group from its touched contacts: their figures in the group's periods, minus what
    they counted before, added to the stored measures (sizes of fresh periods from the day before)."""
    ordered = sorted(periods, key=lambda p: (p.grain != AnalyticsGrain.DAY, p.first, p.grain))
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SET LOCAL work_mem = '{rollup.WORK_MEM}'")
        for statement in dialect.temporary_table(TOUCHED, "id bigint PRIMARY KEY"):
            cursor.execute(statement)
        _touch(cursor, ids, state=state, marks=marks, fresh=plan.fresh)
        rollup.fill_for_contacts(cursor, ordered, ids, contacts=TOUCHED)
        members.fill(cursor, ordered, tracked=plan.tracked)
        changes, campaigns = members.sums(cursor, contacts=TOUCHED, segment_ids=ids)
        joined = _new_contacts_before(cursor, plan.tracked, state=state, marks=marks)
        computed = _apply(ordered, ids, plan=plan, changes=changes, campaigns=campaigns, joined=joined)
        computed.changes = _change_stats(cursor, ordered, ids, plan=plan, state=state, marks=marks)
        rollup.store(computed, ordered, segment_ids=ids)
        members.keep(cursor, contacts=TOUCHED)
        rollup.drop_scratch(cursor)
        cursor.execute(f"DROP TABLE IF EXISTS {TOUCHED}")
    tracking.update({_key(p): ids for p in ordered if p.grain != AnalyticsGrain.DAY})


def _ranges(periods: list[Period]) -> list[tuple[object, object]]:
    spans: list[list] = []
    for period in sorted(periods):
        if spans and period.first <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], period.end)
        else:
            spans.append([period.first, period.end])
    return [(dialect.instant(local_midnight(a)), dialect.instant(local_midnight(b))) for a, b in spans]


def _touch(cursor, ids: list[int], *, state: AnalyticsState, marks: dict, fresh: list[Period]) -> None:
    """The touched contacts: those with source rows new since the last run (by id; deals also by
    close time), new contacts, and every contact with a row dated in a fresh period."""
    activity, lifecycle, deal = Activity._meta.db_table, LifecycleChange._meta.db_table, Deal._meta.db_table
    change, contact = MembershipChange._meta.db_table, Contact._meta.db_table
    since_checked = dialect.instant(state.deals_checked_at or local_midnight(timezone.localdate()))
    segments = ", ".join(str(int(pk)) for pk in ids) or "NULL"
    parts = [
        (f"SELECT contact_id FROM {activity} WHERE id > %s AND id <= %s", [state.activity_id, marks["activity_id"]]),
        (f"SELECT contact_id FROM {lifecycle} WHERE id > %s AND id <= %s", [state.lifecycle_id, marks["lifecycle_id"]]),
        (
            f"SELECT contact_id FROM {deal} WHERE contact_id IS NOT NULL "
            "AND ((id > %s AND id <= %s) OR (closed_at IS NOT NULL AND closed_at >= %s))",
            [state.deal_id, marks["deal_id"], since_checked],
        ),
        (f"SELECT contact_id FROM {change} WHERE id > %s AND id <= %s", [state.change_id, marks["change_id"]]),
        (f"SELECT id FROM {contact} WHERE id > %s AND id <= %s", [state.contact_id, marks["contact_id"]]),
    ]
    for start, end in _ranges(fresh):
        parts += [
            (f"SELECT contact_id FROM {activity} WHERE occurred_at >= %s AND occurred_at < %s", [start, end]),
            (f"SELECT contact_id FROM {lifecycle} WHERE changed_at >= %s AND changed_at < %s", [start, end]),
            (
                f"SELECT contact_id FROM {deal} WHERE contact_id IS NOT NULL "
                "AND ((created_at >= %s AND created_at < %s) "
                "OR (closed_at >= %s AND closed_at < %s))",
                [start, end, start, end],
            ),
            (
                f"SELECT contact_id FROM {change} WHERE segment_id IN ({segments}) "
                "AND changed_at >= %s AND changed_at < %s",
                [start, end],
            ),
            (f"SELECT id FROM {contact} WHERE created_at >= %s AND created_at < %s", [start, end]),
        ]
    cursor.execute(
        f"INSERT INTO {TOUCHED} (id) {' UNION '.join(sql for sql, _ in parts)}",
        [param for _, params in parts for param in params],
    )
    if connection.vendor == "postgresql":
        cursor.execute(dialect.analyze(TOUCHED))


STAT_FIGURES = (
    "engaged",
    "opens",
    "clicks",
    "converted",
    "won_deals",
    "won_amount",
    "purchases",
    "purchase_value",
    "deals_created",
    "pipeline_created",
)
AMOUNTS = {"won_amount", "purchase_value", "pipeline_created"}


def _plus(stored, change) -> int | Decimal:
    """A stored figure plus its change (SQLite sums amounts as floats: read back as cents)."""
    if isinstance(stored, Decimal):
        return stored + Decimal(str(change)).quantize(Decimal("0.01"))
    return stored + int(change)


MEASURE_OF = {"won_deals": "won", "deals_created": "created", "pipeline_created": "pipeline"}


def _new_contacts_before(cursor, periods: list[Period], *, state: AnalyticsState, marks: dict) -> dict[Period, int]:
    """Contacts new since the last run created before each tracked period began: the whole
    database's members at its start gain them (every other member's start is unchanged)."""
    joined = {}
    for period in periods:
        cursor.execute(
            f"SELECT COUNT(*) FROM {Contact._meta.db_table} WHERE id > %s AND id <= %s AND created_at < %s",
            [state.contact_id, marks["contact_id"], dialect.instant(period.start_at)],
        )
        joined[period] = cursor.fetchone()[0]
    return joined


def _apply(
    periods: list[Period], ids: list[int], *, plan: Plan, changes: dict, campaigns: dict, joined: dict[Period, int]
) -> rollup.Computed:
    """The new rows of `periods`: stored rows (tracked) or the day before's size (fresh), plus the changes."""
    scope = [*ids, rollup.DATABASE]
    tracked = set(plan.tracked)
    keys = [rollup.key_of(p) for p in periods]
    stored = {
        (s.grain, s.period_start, s.segment_id or rollup.DATABASE): s
        for s in SegmentStat.objects.filter(grain__in={g for g, _ in keys}, period_start__in={f for _, f in keys})
    }
    responses: dict[tuple, list[int]] = {}
    stages: dict[tuple, list[int]] = {}
    for r in SegmentResponse.objects.filter(grain__in={g for g, _ in keys}, period_start__in={f for _, f in keys}):
        responses[(r.grain, r.period_start, r.segment_id or rollup.DATABASE, r.channel, r.campaign)] = [
            r.responders,
            r.activities,
            r.converted,
        ]
    for t in SegmentStageStat.objects.filter(grain__in={g for g, _ in keys}, period_start__in={f for _, f in keys}):
        stages[(t.grain, t.period_start, t.segment_id or rollup.DATABASE, t.stage)] = [
            t.reached,
            t.converted,
            t.from_previous,
        ]
    ends = dict(plan.before)
    computed, now = rollup.Computed(), timezone.now()
    for period in periods:
        grain, first = rollup.key_of(period)
        two_n = 2 * period.days
        is_tracked = period in tracked
        for segment_id in scope:
            d = changes.get((grain, first, segment_id), {})
            get = lambda name, d=d: d.get(name) or 0  # noqa: E731
            s0 = joined.get(period, 0) if segment_id == rollup.DATABASE else 0
            if is_tracked:
                base = stored[(grain, first, segment_id)]
                start, end, during = base.members_start, base.members_end, base.members_during
                dsum = round(base.avg_members * two_n)
                figures = {name: getattr(base, name) for name in STAT_FIGURES}
                revenue_sq = base.revenue_sq
            else:
                size = ends[(segment_id, first - timedelta(days=1))]
                start = end = during = size
                dsum = two_n * size
                figures = {name: Decimal(0) if name in AMOUNTS else 0 for name in STAT_FIGURES}
                revenue_sq = 0.0
            stat = SegmentStat(
                segment_id=rollup._segment(segment_id),
                grain=grain,
                period_start=first,
                members_start=start + s0,
                members_end=end + s0 + get("ds1"),
                members_during=during + s0 + get("entr"),
                avg_members=(dsum + two_n * s0 + get("ddsum")) / two_n,
                revenue_sq=float(revenue_sq) + float(get("revenue_sq")),
                computed_at=now,
                **{name: _plus(figures[name], get(MEASURE_OF.get(name, name))) for name in STAT_FIGURES},
            )
            computed.stats.append(stat)
            if period.grain == AnalyticsGrain.DAY:
                ends[(segment_id, first)] = stat.members_end
            base_responses = responses if is_tracked else {}
            for channel in CHANNELS:
                key = (grain, first, segment_id, channel, "")
                row = list(base_responses.get(key, [0, 0, 0]))
                row = [
                    row[0] + get(f"responders_{channel}"),
                    row[1] + get(f"activities_{channel}"),
                    row[2] + get(f"conv_{channel}"),
                ]
                if row[0]:
                    computed.responses.append(
                        SegmentResponse(
                            segment_id=rollup._segment(segment_id),
                            grain=grain,
                            period_start=first,
                            channel=channel,
                            responders=row[0],
                            activities=row[1],
                            converted=row[2],
                        )
                    )
            campaign_rows = {k[4]: v for k, v in base_responses.items() if k[:3] == (grain, first, segment_id) and k[4]}
            for (g, f, s, campaign), (n, activities, converted) in campaigns.items():
                if (g, f, s) == (grain, first, segment_id):
                    old = campaign_rows.get(campaign, [0, 0, 0])
                    campaign_rows[campaign] = [old[0] + n, old[1] + activities, old[2] + converted]
            for campaign, (n, activities, converted) in sorted(campaign_rows.items()):
                if n:
                    computed.responses.append(
                        SegmentResponse(
                            segment_id=rollup._segment(segment_id),
                            grain=grain,
                            period_start=first,
                            campaign=campaign,
                            responders=n,
                            activities=activities,
                            converted=converted,
                        )
                    )
            base_stages = stages if is_tracked else {}
            for stage in CONVERSION_STAGES:
                old = base_stages.get((grain, first, segment_id, stage), [0, 0, 0])
                reached, converted, from_previous = (
                    old[0] + get(f"reached_{stage}"),
                    old[1] + get(f"stconv_{stage}"),
                    old[2] + get(f"from_{stage}"),
                )
                if reached or converted:
                    computed.stages.append(
                        SegmentStageStat(
                            segment_id=rollup._segment(segment_id),
                            grain=grain,
                            period_start=first,
                            stage=stage,
                            reached=reached,
                            converted=converted,
                            from_previous=from_previous,
                        )
                    )
    return computed


def _change_stats(
    cursor, periods: list[Period], ids: list[int], *, plan: Plan, state: AnalyticsState, marks: dict
) -> list[SegmentChangeStat]:
    """Joins and leaves by reason: stored plus the changes new since the last run (tracked
    periods), or every change dated in the period (fresh ones)."""
    if not ids:
        return []
    table, local = MembershipChange._meta.db_table, dialect.local_date
    segments = ", ".join(str(int(pk)) for pk in ids)
    cursor.execute(
        f"""SELECT segment_id, {local("changed_at")}, kind, reason, COUNT(*) FROM {table}
        WHERE id > %s AND id <= %s AND segment_id IN ({segments}) GROUP BY 1, 2, 3, 4""",
        [state.change_id, marks["change_id"]],
    )
    new = [(s, dialect.as_date(day), kind, reason, n) for s, day, kind, reason, n in cursor.fetchall()]
    dated = []
    for start, end in _ranges(plan.fresh):
        cursor.execute(
            f"""SELECT segment_id, {local("changed_at")}, kind, reason, COUNT(*) FROM {table}
            WHERE segment_id IN ({segments}) AND changed_at >= %s AND changed_at < %s GROUP BY 1, 2, 3, 4""",
            [start, end],
        )
        dated += [(s, dialect.as_date(day), kind, reason, n) for s, day, kind, reason, n in cursor.fetchall()]
    tracked, rows = set(plan.tracked), []
    keys = [rollup.key_of(p) for p in periods]
    stored = SegmentChangeStat.objects.filter(
        grain__in={g for g, _ in keys}, period_start__in={f for _, f in keys}, segment_id__in=ids
    )
    for period in periods:
        grain, first = rollup.key_of(period)
        totals: dict[tuple, int] = defaultdict(int)
        if period in tracked:
            for row in stored:
                if (row.grain, row.period_start) == (grain, first):
                    totals[(row.segment_id, row.kind, row.reason)] += row.n
            source = new
        else:
            source = dated
        for segment_id, day, kind, reason, n in source:
            if period.first <= day <= period.last:
                totals[(segment_id, kind, reason)] += n
        rows += [
            SegmentChangeStat(segment_id=segment_id, grain=grain, period_start=first, kind=kind, reason=reason, n=n)
            for (segment_id, kind, reason), n in sorted(totals.items())
        ]
    return rows


def _first_new_change_day(state: AnalyticsState, marks: dict) -> date | None:
    days = _days(
        f"SELECT MIN({dialect.local_date('changed_at')}) FROM {MembershipChange._meta.db_table} "
        "WHERE id > %s AND id <= %s",
        [state.change_id, marks["change_id"]],
    )
    return min(days) if days else None


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
        "contact_id": Contact.objects.aggregate(top=Max("pk"))["top"] or 0,
        "at": timezone.now(),
    }


def _record(marks: dict, *, through: date, started: float, periods: int, tracking: dict | None = None) -> None:
    with transaction.atomic():
        state = _state()
        state.contact_id = marks["contact_id"]
        if tracking is not None:
            state.member_periods = tracking
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
    # So does a new contact (the whole database's size), from the day it was created.
    moved |= _days(
        f"SELECT MIN({local('created_at')}) FROM {Contact._meta.db_table} WHERE id > %s AND id <= %s",
        [state.contact_id, marks["contact_id"]],
    )
    first_new = (state.computed_through or today) + timedelta(days=1)
    for start in [*moved, min(first_new, today)]:
        days |= {start + timedelta(days=n) for n in range((today - start).days + 1)}
    return {day for day in days if day <= today}
