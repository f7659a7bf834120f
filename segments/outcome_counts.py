"""Contacts counted by some of their columns and by their outcomes in a window, in one statement.

The outcomes are those of boundary tests and dimension comparisons (segments/boundaries.py), as
segment analytics counts them (segments/analytics/channels.py), over `now - days <= t <= now`:
converted (a won deal closed or a purchase), engaged (an engagement activity), responded (an
e-mail click, on one campaign if named, case-insensitive); revenue is won deal amounts plus
purchase values.

Each outcome is a set of contacts found in one pass over the window's activities of its kinds (or
its won deals), at most a row per contact, and the sets are joined to the contacts; the join is
then grouped by the caller's columns. (Asked per contact, as correlated EXISTS and sums, they
cost an index probe per contact and outcome: 14.6 s of a boundary test at 1M contacts.) The same
statement can also return some columns of each contact, for statistics that need every contact's
value, such as ranks: packed (segments/analytics/dialect.py) into the rows of the first grouping,
the columns that are its keys read from the row.

Where the time goes at 1M contacts / 10M activities (a boundary test's statement, EXPLAIN ANALYZE,
5.7 s, PostgreSQL 15 on 2 cores): the engagement set 2.0 s (1.5M activity rows deduplicated into
700k ids, hashed, probed a million times), the join to ContactMetrics for the scores 1.6 s (a hash
of the million contacts), companies 0.5 s, the other outcome sets 0.4 s, the groupings and the
packing over the stored WITH 1.1 s. Each 1M-entry hash costs a cache miss per row, whatever the
order of the joins: perf puts a quarter of the statement's CPU in ExecScanHashBucket, the probes.
Packing only the score, into the rows of the first grouping (a few dozen, whose keys are the
brackets), instead of a score and two brackets per contact in a pass of its own over the WITH:
the statement's CPU 7.39 s / 8.29 s -> 6.47 s / 7.73 s (backend CPU, min / median of 7 runs
alternated with the old statement, load 4.5-5.1).

Measured and not kept: one grouping by every key with the values packed per row instead of the WITH
(its string_agg states made the hash aggregate spill: no faster); one grouping by the brackets, the
field's value and the outcomes for both tables (at 100k, 0.59-0.62 s of CPU against 0.54-0.58: no
faster); the engagement set as a hashed IN (0-15% less CPU in three alternating runs, and a plain
subplan, one pass over the set per contact, once the set outgrows hash memory); parallel plans
(PostgreSQL 15 cannot share a DISTINCT as a parallel hash, so each worker builds its own, and the
rows of the WITH pass through one Gather: no faster on 2 busy cores); ContactMetrics in contact id
order, so that the probes follow the hash's own order (a sorted copy at 1M, 5 alternated runs at
load 1.2-1.6: 6.08 s / 6.64 s of CPU against 6.14 s / 7.01 s, within the noise). Merge joins on the
contact id: ContactMetrics lies in no order of it (correlation ~0 after compute_metrics), so a
merge join sorts it or reads its primary key at random (at 100k with hash joins off: 0.62-0.65 s of
CPU against 0.52-0.53); the activity history lies in the DEFAULT partition (months before the first
made ahead), so an index in contact order reads all 10M rows for a 90-day window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Context, Decimal

import numpy as np
from django.db import connection
from django.db.models import F, QuerySet, Sum

from contacts.models import Activity, ActivityKind, Contact, Deal, DealStage
from segments.analytics import dialect
from segments.analytics.channels import ENGAGEMENT_KINDS

OUTCOMES = ("converted", "engaged", "responded")
_CENT = Decimal("0.01")


@dataclass
class Counts:
    groups: list[list[dict]]  # per grouping, its rows
    values: np.ndarray  # per contact with every one of the `values` set, those values (a column each)


def count_outcomes(
    contacts: QuerySet[Contact],
    groupings: Sequence[Sequence[str]],
    *,
    values: Sequence[str] = (),
    revenue: bool = False,
    now: datetime,
    days: int,
    campaign: str = "",
) -> Counts:
    """For each grouping, a list of names of annotations of `contacts` and of OUTCOMES: rows of
    their values (an outcome is 0 or 1) and `n`, the number of contacts with those values; with
    `revenue`, also the sums of revenue and of its square (Decimal, 0 when none). `values`: names
    of number annotations read per contact, for the contacts with all of them set, in no
    particular order. One statement: the contacts are joined to their outcomes once and grouped
    each way (a WITH that each grouping reads, which PostgreSQL computes once when several do).
    The values are packed per row of the first grouping, those among its names read from the
    row: no pass of their own over the contacts."""
    start = now - timedelta(days=days)
    q = connection.ops.quote_name
    names = list(dict.fromkeys(name for grouping in groupings for name in grouping))
    outcomes = [name for name in names if name in OUTCOMES]
    keys = [name for name in names if name not in OUTCOMES]
    extra = [name for name in values if name not in names]
    source, params = contacts.order_by().annotate(cid=F("pk")).values("cid", *keys, *extra).query.sql_with_params()
    joins, params = [f"({source}) c"], list(params)
    for alias, per_contact_sql in _per_contact(outcomes, revenue, start=start, now=now, campaign=campaign):
        sql, sql_params = per_contact_sql.query.sql_with_params()
        joins.append(f"LEFT JOIN ({sql}) {alias} ON {alias}.contact_id = c.cid")
        params.extend(sql_params)
    columns = {key: f"c.{q(key)}" for key in [*keys, *extra]}
    columns["converted"] = "CASE WHEN p.contact_id IS NOT NULL OR d.contact_id IS NOT NULL THEN 1 ELSE 0 END"
    columns["engaged"] = "CASE WHEN e.contact_id IS NOT NULL THEN 1 ELSE 0 END"
    columns["responded"] = "CASE WHEN r.contact_id IS NOT NULL THEN 1 ELSE 0 END"
    per_contact = [f"{columns[name]} AS {q(name)}" for name in [*names, *extra]]
    sums = ""
    if revenue:
        # (NULL, which sums skip, for the contacts without revenue, nearly all: sums and squares of a
        # numeric zero each took half the time of the grouping in a test over a million rows)
        per_contact.append(
            "CASE WHEN p.contact_id IS NOT NULL OR d.contact_id IS NOT NULL "
            "THEN COALESCE(p.purchases, 0) + COALESCE(d.amount, 0) END AS revenue"
        )
        sums = ", SUM(revenue) AS revenue, SUM(revenue * revenue) AS revenue_sq"
    packed = [name for name in values if name not in groupings[0]]  # the others are keys of its rows
    nothing = ", NULL AS packed" if values else ""
    pack = f", {dialect.packed_numbers([q(v) for v in packed])} AS packed" if packed else nothing
    # A first branch without rows gives each column the type of its per_contact column: PostgreSQL
    # types a UNION pairwise, and a column NULL in the two branches before its own was text there,
    # which an integer column then could not match.
    typed = (
        f"SELECT 0 AS grouping, {', '.join(q(n) for n in names)}, 0 AS n{', revenue, revenue' if revenue else ''}"
        f"{nothing} FROM per_contact WHERE 1 = 0"
    )
    selects = [typed] + [
        f"SELECT {i} AS grouping, {', '.join(q(n) if n in grouping else 'NULL' for n in names)}, COUNT(*) AS n"
        f"{sums}{pack if i == 0 else nothing} FROM per_contact GROUP BY {', '.join(q(n) for n in grouping)}"
        for i, grouping in enumerate(groupings)
    ]
    sql = f"WITH per_contact AS (SELECT {', '.join(per_contact)} FROM {' '.join(joins)}) {' UNION ALL '.join(selects)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    result = Counts([[] for _ in groupings], np.empty((0, len(values))))
    read: list[np.ndarray] = []
    for grouping, *row in rows:
        own = groupings[grouping]
        item = {name: value for name, value in zip(names, row[: len(names)], strict=True) if name in own}
        item["n"], *money = row[len(names) : len(names) + (3 if revenue else 1)]
        if revenue:
            item["revenue"], item["revenue_sq"] = (_money(value) for value in money)
        result.groups[grouping].append(item)
        if values and grouping == 0:
            read.append(_values_of_row(item, row[-1], values, packed))
    if read:
        result.values = np.concatenate(read)
    return result


def _values_of_row(item: dict, text: str | None, values: Sequence[str], packed: list[str]) -> np.ndarray:
    """The `values` of the contacts of one row of the first grouping: the packed ones unpacked,
    the row's own keys repeated (no contact when one of those keys is NULL)."""
    if any(item[name] is None for name in values if name not in packed):
        return np.empty((0, len(values)))
    unpacked = dialect.unpack_numbers(text, len(packed))
    count = len(unpacked) if packed else item["n"]
    columns = [
        unpacked[:, packed.index(name)] if name in packed else np.full(count, float(item[name])) for name in values
    ]
    return np.column_stack(columns)


def _per_contact(
    outcomes: Sequence[str], revenue: bool, *, start: datetime, now: datetime, campaign: str
) -> list[tuple[str, QuerySet]]:
    """(alias, rows with a contact_id) of the per-contact sets the outcomes read, each at most one
    row per contact: p, purchases (the sum of their values); d, won deals (the sum of amounts);
    e, contacts with an engagement activity; r, with a click (on the campaign). The sets that are
    only flags are distinct ids: a hash of ids, not of aggregates, for the largest (engagement)."""
    activities = Activity.objects.filter(occurred_at__gte=start, occurred_at__lte=now).order_by()
    sets: list[tuple[str, QuerySet]] = []
    if "converted" in outcomes or revenue:
        purchases = activities.filter(kind=ActivityKind.PURCHASE).values("contact_id")
        sets.append(("p", purchases.annotate(purchases=Sum("value"))))
        won = Deal.objects.filter(stage=DealStage.WON, closed_at__gte=start, closed_at__lte=now, contact__isnull=False)
        sets.append(("d", won.order_by().values("contact_id").annotate(amount=Sum("amount"))))
    if "engaged" in outcomes:
        sets.append(("e", activities.filter(kind__in=ENGAGEMENT_KINDS).values("contact_id").distinct()))
    if "responded" in outcomes:
        clicks = activities.filter(kind=ActivityKind.EMAIL_CLICK)
        if campaign:
            clicks = clicks.filter(campaign__iexact=campaign)
        sets.append(("r", clicks.values("contact_id").distinct()))
    return sets


def _money(value: Decimal | float | None) -> Decimal:
    """A sum as the ORM reads a decimal column: exact on PostgreSQL; on SQLite, whose sums of
    decimals are floating point, rounded to cents as Django's converter rounds them."""
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    return Context(prec=15).create_decimal_from_float(value).quantize(_CENT)
