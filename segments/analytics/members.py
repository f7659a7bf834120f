"""Each member's figures of a period, from the rollup's scratch tables, and the kept copy of them
(AnalyticsMemberFigure) for recent periods.

Every stored measure of a segment and period is a sum over its members of a figure of each:
engaged is the number of members whose engagements are above 0, revenue_sq the sum of each
member's revenue squared, a channel's responders the members with an activity of it, the sizes
sums of each member's membership at the period's start (`s0`) and its change over the period
(`ds1` at the end, `ddsum` over the days, `entr` for joining). A member with no outcome and no
membership change in the period counts `s0` and nothing else, so its row is never kept.

The incremental update (updates.py) computes the figures of the touched contacts only, subtracts
their kept rows (or `s0` where none was kept) and adds the new ones: `fill` then `sums`, then
`keep` replaces their rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

from segments.models import AnalyticsMemberFigure

from . import dialect
from .channels import CHANNELS, CONVERSION_STAGES, DEFAULT_STAGE
from .periods import Period
from .rollup import CAMPAIGN_GRAINS, key_of

TABLE = AnalyticsMemberFigure._meta.db_table
MARKER = -1  # segment_id of the row saying that a period's figures are kept (gone after a crash)

OUTCOMES = [
    *(f"n_{name}" for name in CHANNELS),
    "opens",
    "clicks",
    "engagements",
    "purchases",
    "purchase_value",
    "converted",
    "won",
    "won_amount",
    "created",
    "created_amount",
    *(f"r_{stage}" for stage in CONVERSION_STAGES),
    *(f"f_{stage}" for stage in CONVERSION_STAGES),
]
SIZES = ["s0", "ds1", "ddsum", "entr"]
FIGURES = ["n", *OUTCOMES, *SIZES]
AMOUNTS = {"purchase_value", "won_amount", "created_amount"}
KEY = ["grain", "period_start", "segment_id", "contact_id", "campaign"]
COLUMNS = ", ".join([*KEY, *FIGURES])

# What a segment's stored row sums, per member row `t` (campaign ''): name -> SQL.
MEASURES: dict[str, str] = {
    "ds1": "t.ds1",
    "ddsum": "t.ddsum",
    "entr": "t.entr",
    "engaged": "CASE WHEN t.engagements > 0 THEN 1 ELSE 0 END",
    "opens": "t.opens",
    "clicks": "t.clicks",
    "converted": "t.converted",
    "won": "t.won",
    "won_amount": "t.won_amount",
    "purchases": "t.purchases",
    "purchase_value": "t.purchase_value",
    "revenue_sq": "(t.purchase_value + t.won_amount) * (t.purchase_value + t.won_amount)",
    "created": "t.created",
    "pipeline": "t.created_amount",
    **{
        f"{part}_{name}": expression
        for name in CHANNELS
        for part, expression in (
            ("responders", f"CASE WHEN t.n_{name} > 0 THEN 1 ELSE 0 END"),
            ("activities", f"t.n_{name}"),
            ("conv", f"CASE WHEN t.n_{name} > 0 AND t.converted = 1 THEN 1 ELSE 0 END"),
        )
    },
    **{
        f"{part}_{stage}": expression
        for stage in CONVERSION_STAGES
        for part, expression in (
            ("reached", f"t.r_{stage}"),
            ("from", f"t.f_{stage}"),
            ("stconv", f"CASE WHEN t.won > 0 OR t.r_{stage} > 0 THEN 1 ELSE 0 END"),
        )
    },
}


def _scratch(cursor) -> None:
    tz = " with time zone" if connection.vendor == "postgresql" else ""
    binary = dialect.binary_collation()
    figures = ", ".join(f"{name} {'numeric' if name in AMOUNTS else 'integer'} DEFAULT 0" for name in FIGURES)
    tables = {
        "analytics_per": f"grain varchar(8){binary}, period_start date, first_day date, start_at timestamp{tz}, "
        f"end_at timestamp{tz}, days integer, tracked integer",
        "analytics_mem": f"grain varchar(8){binary}, period_start date, segment_id integer, contact_id bigint, "
        f"campaign varchar(100){binary} DEFAULT '', {figures}",
    }
    for name, columns in tables.items():
        for statement in dialect.temporary_table(name, columns):
            cursor.execute(statement)


def fill(cursor, periods: Iterable[Period], *, tracked: Iterable[Period] = ()) -> None:
    """Each member's figures of `periods` into the scratch table `analytics_mem`, from the rollup's
    scratch tables (analytics_iv, analytics_act, analytics_out, analytics_cal holding these periods).
    `tracked` are the periods whose kept rows `sums` subtracts."""
    periods, kept = sorted(set(periods)), set(tracked)
    _scratch(cursor)
    cursor.executemany(
        "INSERT INTO analytics_per (grain, period_start, first_day, start_at, end_at, days, tracked) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [
            (
                key_of(p)[0],
                dialect.day_param(p.first),
                dialect.day_param(p.first),
                dialect.instant(p.start_at),
                dialect.instant(p.end_at),
                p.days,
                int(p in kept),
            )
            for p in periods
        ],
    )
    if connection.vendor == "postgresql":
        cursor.execute(dialect.analyze("analytics_per"))  # unanalysed, it is planned as 860 rows
    zero = {name: "0" for name in FIGURES}
    activity = {
        **zero,
        "n": "x.n",
        **{name: f"x.{name}" for name in OUTCOMES[: len(CHANNELS) + 5]},
    }
    converted = f"o.what = 'won' OR (o.what = 'stage' AND o.stage = '{DEFAULT_STAGE}')"
    outcome = {
        **zero,
        "converted": f"CASE WHEN {converted} THEN 1 ELSE 0 END",
        "won": "CASE WHEN o.what = 'won' THEN o.n ELSE 0 END",
        "won_amount": "CASE WHEN o.what = 'won' THEN o.amount ELSE 0 END",
        "created": "CASE WHEN o.what = 'created' THEN o.n ELSE 0 END",
        "created_amount": "CASE WHEN o.what = 'created' THEN o.amount ELSE 0 END",
        **{f"r_{s}": f"CASE WHEN o.what = 'stage' AND o.stage = '{s}' THEN 1 ELSE 0 END" for s in CONVERSION_STAGES},
        **{
            f"f_{s}": f"CASE WHEN o.what = 'stage' AND o.stage = '{s}' THEN o.from_previous ELSE 0 END"
            for s in CONVERSION_STAGES
        },
    }
    starts = "iv.start_at >= p.start_at AND iv.start_at < p.end_at"
    ends = "iv.end_at >= p.start_at AND iv.end_at < p.end_at"

    def weight(column: str) -> str:  # days of the period a boundary on that day moves: 2(n - i) - 1
        return f"(2 * (p.days - {dialect.days_between('p.first_day', dialect.local_date(column))}) - 1)"

    size = {
        **zero,
        "s0": "CASE WHEN (iv.start_at IS NULL OR iv.start_at < p.start_at) "
        "AND (iv.end_at IS NULL OR iv.end_at >= p.start_at) THEN 1 ELSE 0 END",
        "ds1": f"(CASE WHEN {starts} THEN 1 ELSE 0 END) - (CASE WHEN {ends} THEN 1 ELSE 0 END)",
        "ddsum": f"(CASE WHEN {starts} THEN {weight('iv.start_at')} ELSE 0 END)"
        f" - (CASE WHEN {ends} THEN {weight('iv.end_at')} ELSE 0 END)",
        "entr": f"CASE WHEN {starts} AND (iv.previous_end IS NULL OR iv.previous_end < p.start_at) THEN 1 ELSE 0 END",
    }

    def select(source: dict[str, str], head: str, tail: str) -> str:
        return f"SELECT {head}, {', '.join(f'{source[name]} AS {name}' for name in FIGURES)} {tail}"

    by_period = (
        "JOIN analytics_cal c ON c.day = {0}.day "
        "JOIN analytics_per p ON p.grain = c.grain AND p.period_start = c.period_start"
    )
    taken = {name: ("MAX" if name == "converted" or name.startswith("r_") else "SUM") for name in FIGURES}
    with dialect.hashed_grouping():
        cursor.execute(
            f"""INSERT INTO analytics_mem ({COLUMNS})
            SELECT grain, period_start, segment_id, contact_id, '', {", ".join(f"{taken[n]}({n})" for n in FIGURES)}
            FROM (
                {
                select(
                    activity,
                    "p.grain, p.period_start, x.segment_id, x.contact_id",
                    "FROM analytics_act x " + by_period.format("x"),
                )
            }
                UNION ALL
                {
                select(
                    outcome,
                    "p.grain, p.period_start, o.segment_id, o.contact_id",
                    "FROM analytics_out o " + by_period.format("o"),
                )
            }
                UNION ALL
                {
                select(
                    size,
                    "p.grain, p.period_start, iv.segment_id, iv.contact_id",
                    "FROM analytics_iv iv JOIN analytics_per p ON "
                    "((iv.start_at >= p.start_at AND iv.start_at < p.end_at) "
                    "OR (iv.end_at >= p.start_at AND iv.end_at < p.end_at))",
                )
            }
            ) u GROUP BY 1, 2, 3, 4"""
        )
    cursor.execute(
        "CREATE INDEX analytics_mem_member ON analytics_mem (grain, period_start, segment_id, contact_id, campaign)"
    )
    if connection.vendor == "postgresql":  # the campaign rows below look each member's row up
        cursor.execute(dialect.analyze("analytics_mem"))
    grains = ", ".join(f"'{grain}'" for grain in CAMPAIGN_GRAINS)
    with dialect.hashed_grouping():
        cursor.execute(
            f"""INSERT INTO analytics_mem (grain, period_start, segment_id, contact_id, campaign, n, converted)
            SELECT p.grain, p.period_start, x.segment_id, x.contact_id, x.campaign, SUM(x.n),
                MAX(COALESCE(b.converted, 0))
            FROM analytics_act x {by_period.format("x")}
            LEFT JOIN analytics_mem b ON b.grain = p.grain AND b.period_start = p.period_start
                AND b.segment_id = x.segment_id AND b.contact_id = x.contact_id AND b.campaign = ''
            WHERE x.campaign <> '' AND p.grain IN ({grains})
            GROUP BY 1, 2, 3, 4, 5"""
        )
    if connection.vendor == "postgresql":
        cursor.execute(dialect.analyze("analytics_mem"))


def sums(cursor, *, contacts: str, segment_ids: list[int]) -> tuple[dict, dict]:
    """The change to each stored measure that replacing the kept figures of the contacts in the
    table `contacts` with their figures in analytics_mem makes: {(grain, start, segment): {measure:
    change}} and {(grain, start, segment, campaign): (responders, activities, converted)}.

    Membership at the start (`s0`) is left out: it is the same before and after for every member
    the update keeps figures of (updates.py adds the contacts new to the whole database).
    """
    scope = ", ".join(str(int(pk)) for pk in [0, *segment_ids])
    figures = ", ".join(f"t.{name}" for name in FIGURES)
    rows = f"""SELECT 1 AS sg, t.grain, t.period_start, t.segment_id, t.campaign, {figures} FROM analytics_mem t
        UNION ALL
        SELECT -1, t.grain, t.period_start, t.segment_id, t.campaign, {figures}
        FROM {TABLE} t JOIN analytics_per p ON p.grain = t.grain AND p.period_start = t.period_start
        WHERE t.segment_id IN ({scope}) AND t.contact_id IN (SELECT id FROM {contacts})"""
    with dialect.hashed_grouping():
        measures = ", ".join(f"SUM(t.sg * {expression})" for expression in MEASURES.values())
        cursor.execute(
            f"""SELECT t.grain, t.period_start, t.segment_id, {measures}
            FROM ({rows}) t WHERE t.campaign = '' GROUP BY 1, 2, 3""",
        )
        names = list(MEASURES)
        members = {
            (grain, dialect.as_date(start), segment_id): dict(zip(names, values, strict=True))
            for grain, start, segment_id, *values in cursor.fetchall()
        }
        cursor.execute(
            f"""SELECT t.grain, t.period_start, t.segment_id, t.campaign,
                SUM(t.sg), SUM(t.sg * t.n), SUM(t.sg * t.converted)
            FROM ({rows}) t WHERE t.campaign <> '' GROUP BY 1, 2, 3, 4""",
        )
        campaigns = {
            (grain, dialect.as_date(start), segment_id, campaign): (int(n), int(activities), int(converted))
            for grain, start, segment_id, campaign, n, activities, converted in cursor.fetchall()
        }
    return members, campaigns


def keep(cursor, *, contacts: str | None) -> None:
    """Replace the kept rows of the scratch periods (`analytics_per`) other than days with
    analytics_mem's, for the contacts in the table `contacts` (None: every contact, all segments),
    and mark the periods kept. Only rows with more than `s0` are written."""
    among = f" AND contact_id IN (SELECT id FROM {contacts})" if contacts else ""
    periods = "p.grain = {0}.grain AND p.period_start = {0}.period_start AND p.grain <> 'day'"
    cursor.execute(
        f"DELETE FROM {TABLE} WHERE EXISTS (SELECT 1 FROM analytics_per p WHERE {periods.format(TABLE)}){among}"
    )
    outcome = " OR ".join(f"t.{name} <> 0" for name in FIGURES if name != "s0")
    cursor.execute(
        f"""INSERT INTO {TABLE} ({COLUMNS})
        SELECT {", ".join(f"t.{name}" for name in [*KEY, *FIGURES])}
        FROM analytics_mem t JOIN analytics_per p ON {periods.format("t")}
        WHERE t.campaign <> '' OR {outcome}"""
    )
    cursor.execute(
        f"""INSERT INTO {TABLE} ({COLUMNS})
        SELECT p.grain, p.period_start, {MARKER}, 0, '', {", ".join("0" for _ in FIGURES)} FROM analytics_per p
        WHERE p.grain <> 'day' AND NOT EXISTS (
            SELECT 1 FROM {TABLE} f WHERE f.contact_id = 0 AND f.grain = p.grain
            AND f.period_start = p.period_start AND f.segment_id = {MARKER}
        )"""
    )
