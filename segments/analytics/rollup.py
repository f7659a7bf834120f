"""Segment analytics rolled up per calendar period, credited by membership at the time of each outcome.

One run takes a list of periods and a list of segments and works in scratch tables of its
connection, each filled by one set-based statement:

- `analytics_iv`: membership intervals [start, end) from MembershipChange (join → leave; a rejoin
  opens a new interval; a leave with no join before it started before history did), plus the
  current members with no history at all, from their `joined_at`. The whole database is
  segment 0: every contact from its creation.
- `analytics_cd`: activities per contact, day and campaign, counted by channel, whoever's member
  the contact was; `analytics_act`: the same per segment, for the days inside an interval (a day
  the interval covers whole is the contact's row as it is; a day where it begins or ends is read
  activity by activity); `analytics_out`: lifecycle moves, won deals and created deals per segment,
  member and day; `analytics_pco`: outcomes again per period and member. Activity per period and
  member is summed inside the one statement that reads it (`_member_totals`), never stored.
  tests/test_analytics_crediting.py checks the crediting against a walk over every activity.
- `analytics_cal`: every day of every requested period.

Sizes come from interval starts and ends per day; distinct counts (engaged, converted,
responders) are rows of the per-period member tables, never sums of daily counts.
Stored periods are days, ISO weeks, months and quarters; any other range is computed on request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.db import connection, models, transaction
from django.utils import timezone

from contacts.models import Activity, Contact, Deal, DealStage, LifecycleChange
from segments.models import (
    AnalyticsGrain,
    Membership,
    MembershipChange,
    SegmentChangeStat,
    SegmentResponse,
    SegmentStageStat,
    SegmentStat,
)

from . import dialect
from .channels import CHANNELS, CONVERSION_STAGES, DEFAULT_STAGE, engagement_in, previous_stage_case
from .periods import Period

WORK_MEM = "128MB"  # PostgreSQL, for the rollup's transaction only
DATABASE = 0  # the whole database's segment id in the scratch tables (stored as a null segment)
RANGE = "range"  # the grain of a period that is no stored calendar period
CAMPAIGN_GRAINS = (AnalyticsGrain.MONTH, AnalyticsGrain.QUARTER, RANGE)

ACTIVITY = Activity._meta.db_table
CONTACT = Contact._meta.db_table
DEAL = Deal._meta.db_table
LIFECYCLE = LifecycleChange._meta.db_table
MEMBERSHIP = Membership._meta.db_table
CHANGE = MembershipChange._meta.db_table

CHANNEL_COLUMNS = ", ".join(f"n_{name} integer" for name in CHANNELS)
SCRATCH = {
    # (start_day and end_day: the local days of start_at and end_at)
    "analytics_iv": "segment_id integer, contact_id bigint, start_at timestamp{tz}, end_at timestamp{tz}, "
    "previous_end timestamp{tz}, start_day date, end_day date",
    "analytics_cal": "day date, grain varchar(8){binary}, period_start date, start_at timestamp{tz}",
    # per segment, member, day and campaign: counts by channel and the engagement measures
    "analytics_act": "segment_id integer, contact_id bigint, day date, campaign varchar(100){binary}, n integer, "
    f"{CHANNEL_COLUMNS}, opens integer, clicks integer, engagements integer, purchases integer, purchase_value numeric",
    # the same per contact, day and campaign, whatever the membership
    "analytics_cd": "contact_id bigint, day date, campaign varchar(100){binary}, n integer, "
    f"{CHANNEL_COLUMNS}, opens integer, clicks integer, engagements integer, purchases integer, purchase_value numeric",
    "analytics_out": "segment_id integer, contact_id bigint, day date, what varchar(8){binary}, "
    "stage varchar(20){binary}, from_previous integer, n integer, amount numeric",
    # outcomes per period and member (few rows: conversions and deals are rare beside activities)
    "analytics_pco": "grain varchar(8){binary}, period_start date, segment_id integer, contact_id bigint, "
    "converted integer, won integer, won_amount numeric, created integer, created_amount numeric",
}


def during(column: str) -> str:
    """The condition that `column` (an instant) falls inside the joined interval `iv`."""
    return f"(iv.start_at IS NULL OR {column} >= iv.start_at) AND (iv.end_at IS NULL OR {column} < iv.end_at)"


@dataclass
class Computed:
    stats: list[SegmentStat] = field(default_factory=list)
    responses: list[SegmentResponse] = field(default_factory=list)
    stages: list[SegmentStageStat] = field(default_factory=list)
    changes: list[SegmentChangeStat] = field(default_factory=list)


def key_of(period: Period) -> tuple[str, date]:
    return (period.grain or RANGE, period.first)


def compute(periods: list[Period], *, segment_ids: Iterable[int], database: bool = True) -> Computed:
    """The measures of each segment (and of the whole database) over each period, not stored."""
    results: list[Computed] = []
    compute_groups([periods], segment_ids=segment_ids, database=database, each=lambda _periods, c: results.append(c))
    return results[0] if results else Computed()


def compute_groups(groups: list[list[Period]], *, segment_ids: Iterable[int], database: bool = True, each) -> None:
    """Compute each group of periods in turn, calling `each(periods, computed)` after each, with the
    membership intervals built once for all of them (the window over the history is the costly part)."""
    ids = sorted({int(pk) for pk in segment_ids})
    groups = [sorted(set(periods)) for periods in groups if periods]
    if not groups or (not ids and not database):
        return
    first = min(periods[0].first for periods in groups)
    last = max(p.last for periods in groups for p in periods)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The groupings below sort or hash millions of rows at 1M contacts: let them do it in memory.
            cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        _create_scratch(cursor)
        _fill_intervals(
            cursor,
            ids,
            database=database,
            start=dialect.instant(Period(first, last).start_at),
            end=dialect.instant(Period(first, last).end_at),
        )
        for periods in groups:
            each(periods, _compute_group(cursor, periods, ids, database=database))
        _drop_scratch(cursor)


def _compute_group(cursor, periods: list[Period], ids: list[int], *, database: bool) -> Computed:
    _create_scratch(cursor, [name for name in SCRATCH if name != "analytics_iv"])  # afresh, with no index
    first, last = periods[0].first, max(p.last for p in periods)
    start, end = dialect.instant(periods[0].start_at), dialect.instant(Period(first, last).end_at)
    _fill_calendar(cursor, periods)
    _fill_activities(cursor, start=start, end=end, database=database)
    _fill_outcomes(cursor, start=start, end=end)
    totals = _member_totals(cursor)
    computed = Computed()
    computed.stats = _stats(
        cursor, periods, ids, totals, database=database, start=start, end=end, first=first, last=last
    )
    computed.responses = _responses(cursor, totals)
    computed.stages = _stages(cursor)
    computed.changes = _changes(cursor, periods, ids, start=start, end=end)
    return computed


def store(computed: Computed, periods: list[Period], *, segment_ids: Iterable[int], database: bool = True) -> None:
    """Replace the stored rows of these periods and segments with `computed`, in one transaction."""
    ids = sorted({int(pk) for pk in segment_ids})
    by_grain: dict[str, list[date]] = defaultdict(list)
    for period in periods:
        if period.grain:
            by_grain[period.grain].append(period.first)
    with transaction.atomic():
        for grain, starts in by_grain.items():
            for model in (SegmentStat, SegmentResponse, SegmentStageStat, SegmentChangeStat):
                rows = model.objects.filter(grain=grain, period_start__in=starts)
                scope = rows.filter(segment_id__in=ids)
                scope.delete()
                if database and model is not SegmentChangeStat:
                    rows.filter(segment__isnull=True).delete()
        stored = {grain for grain in by_grain}
        made: list[tuple[type[models.Model], list]] = [
            (SegmentStat, computed.stats),
            (SegmentResponse, computed.responses),
            (SegmentStageStat, computed.stages),
            (SegmentChangeStat, computed.changes),
        ]
        for stat_model, new_rows in made:
            stat_model._default_manager.bulk_create([row for row in new_rows if row.grain in stored], batch_size=2000)


def compute_and_store_groups(groups: list[list[Period]], *, segment_ids: Iterable[int], database: bool = True) -> None:
    """Compute and store each group of periods; the intervals are built once for all groups."""
    ids = list(segment_ids)
    compute_groups(
        groups,
        segment_ids=ids,
        database=database,
        each=lambda periods, computed: store(computed, periods, segment_ids=ids, database=database),
    )


def compute_and_store(periods: list[Period], *, segment_ids: Iterable[int], database: bool = True) -> Computed:
    ids = list(segment_ids)
    computed = compute(periods, segment_ids=ids, database=database)
    store(computed, periods, segment_ids=ids, database=database)
    return computed


# --- scratch tables -------------------------------------------------------------------------------


def _create_scratch(cursor, names: Iterable[str] = SCRATCH) -> None:
    tz = " with time zone" if connection.vendor == "postgresql" else ""
    for name in names:
        columns = SCRATCH[name].format(tz=tz, binary=dialect.binary_collation())
        for statement in dialect.temporary_table(name, columns):
            cursor.execute(statement)


def _drop_scratch(cursor) -> None:
    for name in SCRATCH:
        cursor.execute(f"DROP TABLE IF EXISTS {name}")


def _analyze(cursor, name: str) -> None:
    if connection.vendor == "postgresql":
        cursor.execute(dialect.analyze(name))


def _fill_intervals(cursor, ids: list[int], *, database: bool, start, end) -> None:
    if ids:
        marks = ", ".join(["%s"] * len(ids))
        # One pass of the window over the history (changes from `end` on cannot shape the span), read
        # in the order of change_member_time_idx, and one scan of its rows: a join opens an interval,
        # a leave with nothing before it closes one that began before history did. The current
        # members with no history at all are found by merging the membership's (segment, contact)
        # order with the index's, not by hashing every history row (1M contacts, 4.9M intervals:
        # 18.1 s with a sort, a CTE read twice and the hash; 7.6 s so).
        with dialect.merged_joins():
            cursor.execute(
                f"""INSERT INTO analytics_iv
                    (segment_id, contact_id, start_at, end_at, previous_end, start_day, end_day)
                SELECT segment_id, contact_id, start_at, end_at, previous_end,
                    {dialect.local_date("start_at")}, {dialect.local_date("end_at")}
                FROM (
                    SELECT segment_id, contact_id,
                        CASE WHEN kind = 'join' THEN changed_at END AS start_at,
                        CASE WHEN kind = 'join' THEN next_at ELSE changed_at END AS end_at,
                        CASE WHEN kind = 'join' THEN previous_at END AS previous_end
                    FROM (
                        SELECT segment_id, contact_id, kind, changed_at,
                            LAG(kind) OVER w AS previous_kind, LAG(changed_at) OVER w AS previous_at,
                            LEAD(changed_at) OVER w AS next_at
                        FROM {CHANGE} WHERE segment_id IN ({marks}) AND changed_at < %s
                        WINDOW w AS (PARTITION BY segment_id, contact_id ORDER BY changed_at, id)
                    ) ordered
                    WHERE kind = 'join' OR (kind = 'leave' AND previous_kind IS NULL)
                    UNION ALL
                    SELECT m.segment_id, m.contact_id, m.joined_at, NULL, NULL
                    FROM {MEMBERSHIP} m
                    WHERE m.segment_id IN ({marks}) AND NOT EXISTS (
                        SELECT 1 FROM {CHANGE} c WHERE c.segment_id IN ({marks})
                            AND c.segment_id = m.segment_id AND c.contact_id = m.contact_id
                    )
                ) intervals
                WHERE (start_at IS NULL OR start_at < %s) AND (end_at IS NULL OR end_at >= %s)
                    AND (start_at IS NULL OR end_at IS NULL OR start_at < end_at)""",
                [*ids, end, *ids, *ids, end, start],
            )
    if database:
        cursor.execute(
            f"""INSERT INTO analytics_iv (segment_id, contact_id, start_at, end_at, start_day)
            SELECT {DATABASE}, id, created_at, NULL, {dialect.local_date("created_at")}
            FROM {CONTACT} WHERE created_at < %s""",
            [end],
        )
    cursor.execute("CREATE INDEX analytics_iv_contact ON analytics_iv (contact_id)")
    _analyze(cursor, "analytics_iv")


def _fill_calendar(cursor, periods: list[Period]) -> None:
    rows = [
        (dialect.day_param(day), grain, dialect.day_param(first), dialect.instant(period.start_at))
        for period in periods
        for grain, first in [key_of(period)]
        for day in period.day_list()
    ]
    cursor.executemany("INSERT INTO analytics_cal (day, grain, period_start, start_at) VALUES (%s, %s, %s, %s)", rows)
    cursor.execute("CREATE INDEX analytics_cal_day ON analytics_cal (day)")
    _analyze(cursor, "analytics_cal")


def _channel_sums(column: str) -> str:
    return ", ".join(
        f"SUM(CASE WHEN {column} IN ({', '.join(repr(str(k)) for k in kinds)}) THEN 1 ELSE 0 END)"
        for kinds in CHANNELS.values()
    )


MEASURES = ("opens", "clicks", "engagements", "purchases", "purchase_value")
CHANNEL_NAMES = ", ".join(f"n_{name}" for name in CHANNELS)


def _fill_activities(cursor, *, start, end, database: bool) -> None:
    """Activities inside an interval, per segment, member, day and campaign, in two parts that never
    meet: days an interval covers whole take the member's day as it is (summed once per contact in
    `analytics_cd`, then copied to each segment the contact was in all day); days where an interval
    begins or ends are read activity by activity against its instants. Crediting every activity to
    every interval and then grouping (the former single statement) hashed ~7 rows per activity."""
    kinds = ", ".join(f"'{kind}'" for kinds in CHANNELS.values() for kind in kinds)
    figures = f"""COUNT(*), {_channel_sums("a.kind")},
            SUM(CASE WHEN a.kind = 'email_open' THEN 1 ELSE 0 END),
            SUM(CASE WHEN a.kind = 'email_click' THEN 1 ELSE 0 END),
            SUM(CASE WHEN {engagement_in("a.kind")} THEN 1 ELSE 0 END),
            SUM(CASE WHEN a.kind = 'purchase' THEN 1 ELSE 0 END),
            SUM(CASE WHEN a.kind = 'purchase' THEN COALESCE(a.value, 0) ELSE 0 END)"""
    columns = f"contact_id, day, campaign, n, {CHANNEL_NAMES}, {', '.join(MEASURES)}"
    day = dialect.local_date("a.occurred_at")
    # Without the whole database, only the contacts who were a member of something during the span
    # are summed. With it, that is nearly every contact: the rows of the others join no interval
    # below, and the check hashed every interval for nothing (1M contacts, a quarter: 5.3-6.3 s
    # with it, 2.4-2.9 s without).
    member = (
        ""
        if database
        else """AND EXISTS (
                SELECT 1 FROM analytics_iv iv WHERE iv.contact_id = a.contact_id
                    AND (iv.start_at IS NULL OR iv.start_at < %s) AND (iv.end_at IS NULL OR iv.end_at > %s)
            )"""
    )
    cursor.execute(
        f"""INSERT INTO analytics_cd ({columns})
        SELECT a.contact_id, {day}, a.campaign, {figures}
        FROM {ACTIVITY} a
        WHERE a.occurred_at >= %s AND a.occurred_at < %s AND a.kind IN ({kinds}, 'purchase') {member}
        GROUP BY 1, 2, 3""",
        [start, end, *([] if database else [end, start])],
    )
    _analyze(cursor, "analytics_cd")
    cursor.execute(
        f"""INSERT INTO analytics_act (segment_id, {columns})
        SELECT iv.segment_id, {", ".join(f"cd.{column.strip()}" for column in columns.split(","))}
        FROM analytics_cd cd JOIN analytics_iv iv ON iv.contact_id = cd.contact_id
        WHERE (iv.start_day IS NULL OR iv.start_day < cd.day) AND (iv.end_day IS NULL OR iv.end_day > cd.day)"""
    )
    # Intervals with an instant inside the span (the others cover every day of it).
    cursor.execute(
        f"""INSERT INTO analytics_act (segment_id, {columns})
        SELECT iv.segment_id, a.contact_id, {day}, a.campaign, {figures}
        FROM {ACTIVITY} a JOIN analytics_iv iv ON iv.contact_id = a.contact_id AND {during("a.occurred_at")}
            AND (iv.start_day = {day} OR iv.end_day = {day})
        WHERE a.occurred_at >= %s AND a.occurred_at < %s AND a.kind IN ({kinds}, 'purchase')
            AND ((iv.start_at >= %s AND iv.start_at < %s) OR (iv.end_at >= %s AND iv.end_at < %s))
        GROUP BY 1, 2, 3, 4""",
        [start, end, start, end, start, end],
    )
    _analyze(cursor, "analytics_act")


def _fill_outcomes(cursor, *, start, end) -> None:
    cursor.execute(
        f"""INSERT INTO analytics_out (segment_id, contact_id, day, what, stage, from_previous, n, amount)
        SELECT iv.segment_id, l.contact_id, {dialect.local_date("l.changed_at")}, 'stage', l.to_stage,
            SUM(CASE WHEN l.from_stage = {previous_stage_case("l.to_stage")} THEN 1 ELSE 0 END), COUNT(*), 0
        FROM {LIFECYCLE} l JOIN analytics_iv iv ON iv.contact_id = l.contact_id AND {during("l.changed_at")}
        WHERE l.changed_at >= %s AND l.changed_at < %s
        GROUP BY 1, 2, 3, 4, 5""",
        [start, end],
    )
    for what, column, condition in (
        ("won", "closed_at", f"d.stage = '{DealStage.WON}'"),
        ("created", "created_at", "1 = 1"),
    ):
        cursor.execute(
            f"""INSERT INTO analytics_out (segment_id, contact_id, day, what, stage, from_previous, n, amount)
            SELECT iv.segment_id, d.contact_id, {dialect.local_date(f"d.{column}")}, '{what}', '', 0,
                COUNT(*), SUM(d.amount)
            FROM {DEAL} d JOIN analytics_iv iv ON iv.contact_id = d.contact_id AND {during(f"d.{column}")}
            WHERE {condition} AND d.{column} >= %s AND d.{column} < %s
            GROUP BY 1, 2, 3""",
            [start, end],
        )
    _analyze(cursor, "analytics_out")
    converted = f"o.what = 'won' OR (o.what = 'stage' AND o.stage = '{DEFAULT_STAGE}')"
    cursor.execute(
        f"""INSERT INTO analytics_pco
            (grain, period_start, segment_id, contact_id, converted, won, won_amount, created, created_amount)
        SELECT c.grain, c.period_start, o.segment_id, o.contact_id,
            MAX(CASE WHEN {converted} THEN 1 ELSE 0 END),
            SUM(CASE WHEN o.what = 'won' THEN o.n ELSE 0 END),
            SUM(CASE WHEN o.what = 'won' THEN o.amount ELSE 0 END),
            SUM(CASE WHEN o.what = 'created' THEN o.n ELSE 0 END),
            SUM(CASE WHEN o.what = 'created' THEN o.amount ELSE 0 END)
        FROM analytics_out o JOIN analytics_cal c ON c.day = o.day
        GROUP BY 1, 2, 3, 4"""
    )
    # Responses look each member's outcome up here (LEFT JOINs on all four columns): without an
    # index SQLite scans the table once per row, which took the demo's backfill past 10 minutes.
    cursor.execute("CREATE INDEX analytics_pco_member ON analytics_pco (grain, period_start, segment_id, contact_id)")
    _analyze(cursor, "analytics_pco")


# --- measures -------------------------------------------------------------------------------------


def _segment(segment_id: int) -> int | None:
    return None if segment_id == DATABASE else segment_id


def _grouped(cursor, sql: str, params: list | None = None) -> dict[tuple, tuple]:
    """Rows keyed by (grain, period_start, segment_id, ...): the leading columns of each row."""
    cursor.execute(sql, params or [])
    return {(row[0], dialect.as_date(row[1]), row[2]): row[3:] for row in cursor.fetchall()}


def _day_sizes(cursor, ids: list[int], *, start, end, first: date, last: date) -> dict[int, dict[date, int]]:
    """Each segment's member count at the end of every day first..last (and at first's start)."""
    cursor.execute(
        """SELECT segment_id, COUNT(*) FROM analytics_iv
        WHERE (start_at IS NULL OR start_at < %s) AND (end_at IS NULL OR end_at >= %s) GROUP BY 1""",
        [start, start],
    )
    base = dict(cursor.fetchall())
    moves: dict[int, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for column, sign in (("start_at", 1), ("end_at", -1)):
        cursor.execute(
            f"""SELECT segment_id, {dialect.local_date(column)}, COUNT(*) FROM analytics_iv
            WHERE {column} >= %s AND {column} < %s GROUP BY 1, 2""",
            [start, end],
        )
        for segment_id, day, count in cursor.fetchall():
            moves[segment_id][dialect.as_date(day)] += sign * count
    sizes: dict[int, dict[date, int]] = {}
    for segment_id in ids:
        running = base.get(segment_id, 0)
        series = {first - timedelta(days=1): running}
        day = first
        while day <= last:
            running += moves[segment_id].get(day, 0)
            series[day] = running
            day += timedelta(days=1)
        sizes[segment_id] = series
    return sizes


@dataclass
class Totals:
    """What one segment's members did in one period: counts, sums and the spread of revenue."""

    engaged: int = 0
    opens: int = 0
    clicks: int = 0
    purchases: int = 0
    purchase_value: Decimal = Decimal(0)
    converted: int = 0
    won: int = 0
    won_amount: Decimal = Decimal(0)
    created: int = 0
    pipeline: Decimal = Decimal(0)
    revenue_sq: float = 0.0
    channels: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # responders, activities, converted


def _member_totals(cursor) -> dict[tuple, Totals]:
    """Per period and segment, in one statement: each member's activity and outcomes rolled up per
    period and member (never stored: it is the largest set of the rollup), then summed. A distinct
    count is a count of member rows; revenue's spread squares each member's.

    A member's outcomes (`analytics_pco`, at most a row per period and member, hence MAX: it keeps
    no running sum for the activity rows, where they are NULL) are rows of their own in the same
    grouping as the activity, not a full join of the two grouped sets, which hashed the large one
    again (1M contacts, the incremental's quarter: 10.2-14.2 s the statement, 9.2-9.3 s so)."""
    activity = [*(f"n_{name}" for name in CHANNELS), *MEASURES]
    outcome = ["converted", "won", "won_amount", "created", "created_amount"]
    member_figures = ", ".join(
        [*(f"SUM({column}) AS {column}" for column in activity), *(f"MAX({column}) AS {column}" for column in outcome)]
    )
    activity_rows = ", ".join([*(f"x.{column}" for column in activity), *(f"NULL AS {column}" for column in outcome)])
    outcome_rows = ", ".join([*(f"NULL AS {column}" for column in activity), *(f"o.{column}" for column in outcome)])
    channels = ", ".join(
        f"SUM(CASE WHEN m.n_{name} > 0 THEN 1 ELSE 0 END), SUM(COALESCE(m.n_{name}, 0)), "
        f"SUM(CASE WHEN m.n_{name} > 0 AND m.converted = 1 THEN 1 ELSE 0 END)"
        for name in CHANNELS
    )
    revenue = "(COALESCE(m.purchase_value, 0) + COALESCE(m.won_amount, 0))"
    with dialect.hashed_grouping():
        cursor.execute(
            f"""SELECT m.grain, m.period_start, m.segment_id,
                SUM(CASE WHEN m.engagements > 0 THEN 1 ELSE 0 END), SUM(COALESCE(m.opens, 0)),
                SUM(COALESCE(m.clicks, 0)), SUM(COALESCE(m.purchases, 0)), SUM(COALESCE(m.purchase_value, 0)),
                SUM(COALESCE(m.converted, 0)), SUM(COALESCE(m.won, 0)), SUM(COALESCE(m.won_amount, 0)),
                SUM(COALESCE(m.created, 0)), SUM(COALESCE(m.created_amount, 0)), SUM({revenue} * {revenue}),
                {channels}
            FROM (
                SELECT grain, period_start, segment_id, contact_id, {member_figures}
                FROM (
                    SELECT c.grain, c.period_start, x.segment_id, x.contact_id, {activity_rows}
                    FROM analytics_act x JOIN analytics_cal c ON c.day = x.day
                    UNION ALL
                    SELECT o.grain, o.period_start, o.segment_id, o.contact_id, {outcome_rows}
                    FROM analytics_pco o
                ) member_rows
                GROUP BY 1, 2, 3, 4
            ) m
            GROUP BY 1, 2, 3"""
        )
    rows = cursor.fetchall()
    totals = {}
    for grain, period_start, segment_id, *figures in rows:
        engaged, opens, clicks, purchases, purchase_value, converted, won, won_amount, created, pipeline, spread = (
            figures[:11]
        )
        per_channel = figures[11:]
        # PostgreSQL sums the members' bigint sums as numeric: counts are read back as int.
        totals[(grain, dialect.as_date(period_start), segment_id)] = Totals(
            engaged=int(engaged),
            opens=int(opens),
            clicks=int(clicks),
            purchases=int(purchases),
            purchase_value=Decimal(purchase_value),
            converted=int(converted),
            won=int(won),
            won_amount=Decimal(won_amount),
            created=int(created),
            pipeline=Decimal(pipeline),
            revenue_sq=float(spread or 0),
            channels={
                name: (int(per_channel[3 * i]), int(per_channel[3 * i + 1]), int(per_channel[3 * i + 2] or 0))
                for i, name in enumerate(CHANNELS)
            },
        )
    return totals


def _stats(
    cursor, periods, ids, totals: dict[tuple, Totals], *, database: bool, start, end, first: date, last: date
) -> list[SegmentStat]:
    scope = [*ids, *([DATABASE] if database else [])]
    sizes = _day_sizes(cursor, scope, start=start, end=end, first=first, last=last)
    entrants = _entrants(cursor, start=start)
    now, stats = timezone.now(), []
    for period in periods:
        grain, period_start = key_of(period)
        for segment_id in scope:
            series = sizes[segment_id]
            days = period.day_list()
            ends = [series[day] for day in days]
            starts = [series[day - timedelta(days=1)] for day in days]
            t = totals.get((grain, period_start, segment_id)) or Totals()
            (entered,) = entrants.get((grain, period_start, segment_id), (0,))
            stats.append(
                SegmentStat(
                    segment_id=_segment(segment_id),
                    grain=grain,
                    period_start=period_start,
                    members_start=starts[0],
                    members_end=ends[-1],
                    members_during=starts[0] + entered,
                    avg_members=sum(s + e for s, e in zip(starts, ends, strict=True)) / (2 * len(days)),
                    engaged=t.engaged,
                    opens=t.opens,
                    clicks=t.clicks,
                    converted=t.converted,
                    won_deals=t.won,
                    won_amount=t.won_amount,
                    purchases=t.purchases,
                    purchase_value=t.purchase_value,
                    revenue_sq=t.revenue_sq,
                    deals_created=t.created,
                    pipeline_created=t.pipeline,
                    computed_at=now,
                )
            )
    return stats


def _entrants(cursor, *, start) -> dict[tuple, tuple]:
    """Per period, the contacts who joined during it and were not members at its start: interval
    starts in the period whose contact's previous interval (of that segment) ended before it began.
    (A join's previous interval ends at the change just before it, kept as `previous_end`.)"""
    return _grouped(
        cursor,
        f"""SELECT c.grain, c.period_start, e.segment_id, COUNT(*)
        FROM analytics_iv e JOIN analytics_cal c ON c.day = {dialect.local_date("e.start_at")}
        WHERE e.start_at >= %s AND (e.previous_end IS NULL OR e.previous_end < c.start_at)
        GROUP BY 1, 2, 3""",
        [start],
    )


def _responses(cursor, totals: dict[tuple, Totals]) -> list[SegmentResponse]:
    """Responders, activities and converted responders per channel (from the member totals) and
    per campaign (month, quarter and range only)."""
    responses = [
        SegmentResponse(
            segment_id=_segment(segment_id),
            grain=grain,
            period_start=period_start,
            channel=name,
            responders=responders,
            activities=activities,
            converted=converted,
        )
        for (grain, period_start, segment_id), t in totals.items()
        for name, (responders, activities, converted) in t.channels.items()
        if responders
    ]
    grains = ", ".join(f"'{grain}'" for grain in CAMPAIGN_GRAINS)
    cursor.execute(
        f"""SELECT t.grain, t.period_start, t.segment_id, t.campaign, COUNT(*), SUM(t.n),
            SUM(CASE WHEN o.converted = 1 THEN 1 ELSE 0 END)
        FROM (
            SELECT c.grain, c.period_start, x.segment_id, x.contact_id, x.campaign, SUM(x.n) AS n
            FROM analytics_act x JOIN analytics_cal c ON c.day = x.day
            WHERE x.campaign <> '' AND c.grain IN ({grains})
            GROUP BY 1, 2, 3, 4, 5
        ) t LEFT JOIN analytics_pco o ON o.grain = t.grain AND o.period_start = t.period_start
            AND o.segment_id = t.segment_id AND o.contact_id = t.contact_id
        GROUP BY 1, 2, 3, 4"""
    )
    for grain, period_start, segment_id, campaign, responders, activities, converted in cursor.fetchall():
        responses.append(
            SegmentResponse(
                segment_id=_segment(segment_id),
                grain=grain,
                period_start=dialect.as_date(period_start),
                campaign=campaign,
                responders=responders,
                activities=activities,
                converted=converted or 0,
            )
        )
    return responses


def _stages(cursor) -> list[SegmentStageStat]:
    stages = " UNION ALL ".join(f"SELECT '{stage}' AS stage" for stage in CONVERSION_STAGES)
    reached = _grouped_by_stage(
        cursor,
        """SELECT c.grain, c.period_start, o.segment_id, o.stage, COUNT(DISTINCT o.contact_id), SUM(o.from_previous)
        FROM analytics_out o JOIN analytics_cal c ON c.day = o.day WHERE o.what = 'stage' GROUP BY 1, 2, 3, 4""",
    )
    converted = _grouped_by_stage(
        cursor,
        f"""SELECT c.grain, c.period_start, o.segment_id, s.stage, COUNT(DISTINCT o.contact_id)
        FROM analytics_out o JOIN analytics_cal c ON c.day = o.day
        JOIN ({stages}) s ON o.what = 'won' OR (o.what = 'stage' AND o.stage = s.stage)
        GROUP BY 1, 2, 3, 4""",
    )
    rows = []
    for key in sorted(set(reached) | set(converted), key=str):
        grain, period_start, segment_id, stage = key
        if stage not in CONVERSION_STAGES:
            continue
        reached_n, from_previous = reached.get(key, (0, 0))
        (converted_n,) = converted.get(key, (0,))
        rows.append(
            SegmentStageStat(
                segment_id=_segment(segment_id),
                grain=grain,
                period_start=period_start,
                stage=stage,
                reached=reached_n,
                converted=converted_n,
                from_previous=from_previous or 0,
            )
        )
    return rows


def _grouped_by_stage(cursor, sql: str) -> dict[tuple, tuple]:
    cursor.execute(sql)
    return {(row[0], dialect.as_date(row[1]), row[2], row[3]): row[4:] for row in cursor.fetchall()}


def _changes(cursor, periods: list[Period], ids: list[int], *, start, end) -> list[SegmentChangeStat]:
    if not ids:
        return []
    marks = ", ".join(["%s"] * len(ids))
    cursor.execute(
        f"""SELECT segment_id, {dialect.local_date("changed_at")}, kind, reason, COUNT(*) FROM {CHANGE}
        WHERE segment_id IN ({marks}) AND changed_at >= %s AND changed_at < %s GROUP BY 1, 2, 3, 4""",
        [*ids, start, end],
    )
    by_day: dict[date, list[tuple]] = defaultdict(list)
    for segment_id, day, kind, reason, count in cursor.fetchall():
        by_day[dialect.as_date(day)].append((segment_id, kind, reason, count))
    rows = []
    for period in periods:
        grain, period_start = key_of(period)
        totals: dict[tuple, int] = defaultdict(int)
        for day in period.day_list():
            for segment_id, kind, reason, count in by_day.get(day, ()):
                totals[(segment_id, kind, reason)] += count
        rows += [
            SegmentChangeStat(
                segment_id=segment_id, grain=grain, period_start=period_start, kind=kind, reason=reason, n=n
            )
            for (segment_id, kind, reason), n in sorted(totals.items())
        ]
    return rows
