"""Contacts counted by some of their columns and by their outcomes in a window, in one statement.

The outcomes are those of boundary tests and dimension comparisons (segments/boundaries.py), as
segment analytics counts them (segments/analytics/channels.py), over `now - days <= t <= now`:
converted (a won deal closed or a purchase), engaged (an engagement activity), responded (an
e-mail click, on one campaign if named, case-insensitive); revenue is won deal amounts plus
purchase values.

Each outcome is a set of contacts found in one pass over the window's activities of its kinds (or
its won deals), and the sets are joined to the contacts; the join is then grouped by the caller's
columns. (Asked per contact, as correlated EXISTS and sums, they cost an index probe per contact
and outcome: 14.6 s of a boundary test at 1M contacts.) The sums (purchases, won deals) are a row
per contact, joined by id; the sets that are only flags (engaged, responded, and the caller's
first_of columns, such as segment members) are bit masks of ids (dialect.id_words), a row per 64
ids, joined by the word of the id. The same statement can also return some columns of each
contact, for statistics that need every contact's value, such as ranks: packed
(segments/analytics/dialect.py) into the rows of the first grouping, the columns that are its keys
read from the row. Rows of other tables whose primary key is the contact id (ContactMetrics) can
be grouped in the same statement, with the same outcomes, so that a caller whose columns come from
them alone joins them to nothing else.

Where the time goes at 1M contacts / 10M activities (a boundary test's statement, EXPLAIN ANALYZE
at load ~1, PostgreSQL 15 on 2 cores, crmseg_bench copy), 3.26 s: the join to ContactMetrics for
the scores 0.87 s (the contacts read and hashed, the metrics read and probing), companies 0.39 s,
purchases and deals 0.26 s, the engagement masks 0.46 s (1.5M activity rows into 15.6k words) and
their join with the row's other columns 0.44 s, the groupings and the packing over the stored WITH
0.67 s. The engagement set as a hash of ids, deduplicated from the same 1.5M rows into 700k and
probed a million times, took 1.0 s to build and 0.5 s to probe (4.23 s in all, load ~2). Earlier,
packing only the score into the rows of the first grouping (a few dozen, whose keys are the
brackets), instead of a score and two brackets per contact in a pass of its own over the WITH: the
statement's CPU 7.39 s / 8.29 s -> 6.47 s / 7.73 s (backend CPU, min / median of 7 runs alternated
with the old statement, load 4.5-5.1).

Measured and not kept: purchases and won deals summed as one set, one join instead of two (at 1M,
backend CPU min / median of alternated runs at load 3-5: the boundary test's statement 2.79 / 2.91
s against 2.49 / 2.78 s, the comparison of five schemes 2.89 / 3.57 s against 2.92 / 3.14 s); one
grouping by every key with the values packed per row instead of the WITH
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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Context, Decimal

import numpy as np
from django.db import connection
from django.db.models import F, QuerySet, Sum

from contacts.models import Activity, ActivityKind, Deal, DealStage
from segments.analytics import dialect
from segments.analytics.channels import ENGAGEMENT_KINDS

OUTCOMES = ("converted", "engaged", "responded")
_CENT = Decimal("0.01")


@dataclass
class Counts:
    groups: list[list[dict]]  # per grouping, its rows
    values: np.ndarray  # per contact with every one of the `values` set, those values (a column each)


def count_outcomes(
    contacts: QuerySet,
    groupings: Sequence[Sequence[str]],
    *,
    values: Sequence[str] = (),
    revenue: bool = False,
    now: datetime,
    days: int,
    campaign: str = "",
    first_of: Mapping[str, Sequence[tuple[str, QuerySet]]] | None = None,
    others: Sequence[tuple[QuerySet, Sequence[Sequence[str]]]] = (),
) -> Counts:
    """For each grouping, a list of names of annotations of `contacts` (rows whose pk is a contact
    id) and of OUTCOMES: rows of their values (an outcome is 0 or 1) and `n`, the number of
    contacts with those values; with `revenue`, also the sums of revenue and of its square
    (Decimal, 0 when none). `values`: names of number annotations read per contact, for the
    contacts with all of them set, in no particular order. `first_of`: names usable in groupings,
    each with (label, contact ids) pairs: its value is the label of the first pair whose ids (a
    QuerySet of rows with a contact_id) hold the contact, "" when none does. `others`: more
    (rows, groupings) read the same way, whose groupings follow `groupings` in Counts.groups.

    One statement (one snapshot): the rows are joined to their outcomes once and grouped each way
    (a WITH that each grouping reads, which PostgreSQL computes once when several do). The values
    are packed per row of the first grouping, those among its names read from the row: no pass of
    their own over the contacts."""
    window = (now - timedelta(days=days), now, campaign)
    sources = [(contacts, groupings, first_of or {}), *((rows, own, {}) for rows, own in others)]
    everything = [grouping for _rows, own, _first in sources for grouping in own]
    names = list(dict.fromkeys(name for grouping in everything for name in grouping))
    q = connection.ops.quote_name
    ctes, params, selects = [], [], []
    home: dict[str, str] = {}  # a name: the first WITH that has it
    for j, (rows, own, first) in enumerate(sources):
        mine = list(dict.fromkeys(name for grouping in own for name in grouping))
        sql, sql_params = _per_contact(rows, mine, first, values if j == 0 else (), revenue and j == 0, window)
        ctes.append(f"per_contact{j} AS ({sql})")
        params.extend(sql_params)
        home.update({name: f"per_contact{j}" for name in mine if name not in home})
    packed = [name for name in values if name not in groupings[0]]  # the others are keys of its rows
    nothing = ", NULL AS packed" if values else ""
    pack = f", {dialect.packed_numbers([q(v) for v in packed])} AS packed" if packed else nothing
    sums = ", SUM(revenue) AS revenue, SUM(revenue * revenue) AS revenue_sq" if revenue else ""
    # A first branch without rows gives each column the type of its per_contact column: PostgreSQL
    # types a UNION pairwise, and a column NULL in the two branches before its own was text there,
    # which an integer column then could not match.
    money = ", per_contact0.revenue, per_contact0.revenue" if revenue else ""
    selects.append(
        f"SELECT 0 AS grouping, {', '.join(f'{home[n]}.{q(n)}' for n in names)}, 0 AS n{money}{nothing} "
        f"FROM {', '.join(f'per_contact{j}' for j in range(len(sources)))} WHERE 1 = 0"
    )
    i = 0
    for j, (_rows, own, _first) in enumerate(sources):
        for grouping in own:
            selects.append(
                f"SELECT {i} AS grouping, {', '.join(q(n) if n in grouping else 'NULL' for n in names)}, COUNT(*) AS n"
                f"{sums if j == 0 else ', NULL, NULL' if revenue else ''}{pack if i == 0 else nothing} "
                f"FROM per_contact{j} GROUP BY {', '.join(q(n) for n in grouping)}"
            )
            i += 1
    sql = f"WITH {', '.join(ctes)} {' UNION ALL '.join(selects)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    result = Counts([[] for _ in everything], np.empty((0, len(values))))
    read: list[np.ndarray] = []
    for grouping, *row in found:
        own = everything[grouping]
        item = {name: value for name, value in zip(names, row[: len(names)], strict=True) if name in own}
        item["n"], *sums_of = row[len(names) : len(names) + (3 if revenue else 1)]
        if revenue:
            item["revenue"], item["revenue_sq"] = (_money(value) for value in sums_of)
        result.groups[grouping].append(item)
        if values and grouping == 0:
            read.append(_values_of_row(item, row[-1], values, packed))
    if read:
        result.values = np.concatenate(read)
    return result


def _per_contact(
    rows: QuerySet,
    names: Sequence[str],
    first_of: Mapping[str, Sequence[tuple[str, QuerySet]]],
    values: Sequence[str],
    revenue: bool,
    window: tuple[datetime, datetime, str],
) -> tuple[str, list]:
    """SQL and params of the rows joined to their outcomes: the columns `names` and `values`
    (with `revenue`, also the contact's revenue, NULL when none)."""
    start, now, campaign = window
    q = connection.ops.quote_name
    outcomes = [name for name in names if name in OUTCOMES]
    keys = [name for name in names if name not in OUTCOMES and name not in first_of]
    extra = [name for name in values if name not in names]
    source, params = rows.order_by().annotate(cid=F("pk")).values("cid", *keys, *extra).query.sql_with_params()
    joins, params = [f"({source}) c"], list(params)
    for alias, per_contact in _sums(outcomes, revenue, start=start, now=now):
        sql, sql_params = per_contact.query.sql_with_params()
        joins.append(f"LEFT JOIN ({sql}) {alias} ON {alias}.contact_id = c.cid")
        params.extend(sql_params)
    id_sets = _id_sets(outcomes, start=start, now=now, campaign=campaign)
    id_sets.update({f"f{i}": [ids for _label, ids in pairs] for i, pairs in enumerate(first_of.values())})
    for alias, sets in id_sets.items():
        parts = []
        for k, ids in enumerate(sets):
            sql, sql_params = ids.query.sql_with_params()
            parts.append(f"SELECT s{k}.contact_id AS id, {k} AS part FROM ({sql}) s{k}")
            params.extend(sql_params)
        words = dialect.id_words(" UNION ALL ".join(parts), len(parts))
        joins.append(f"LEFT JOIN ({words}) {alias} ON {alias}.w = {dialect.id_word('c.cid')}")
    columns = {key: f"c.{q(key)}" for key in [*keys, *extra]}
    columns["converted"] = "CASE WHEN p.contact_id IS NOT NULL OR d.contact_id IS NOT NULL THEN 1 ELSE 0 END"
    columns["engaged"] = f"CASE WHEN {dialect.has_id('e.b0', 'c.cid')} THEN 1 ELSE 0 END"
    columns["responded"] = f"CASE WHEN {dialect.has_id('r.b0', 'c.cid')} THEN 1 ELSE 0 END"
    labels: dict[str, list[str]] = {}  # the params of a column
    for i, (name, pairs) in enumerate(first_of.items()):
        whens = " ".join(f"WHEN {dialect.has_id(f'f{i}.b{k}', 'c.cid')} THEN %s" for k in range(len(pairs)))
        columns[name], labels[name] = f"CASE {whens} ELSE '' END", [label for label, _ids in pairs]
    selected = [f"{columns[name]} AS {q(name)}" for name in [*names, *extra]]
    if revenue:
        # (NULL, which sums skip, for the contacts without revenue, nearly all: sums and squares of a
        # numeric zero each took half the time of the grouping in a test over a million rows)
        selected.append(
            "CASE WHEN p.contact_id IS NOT NULL OR d.contact_id IS NOT NULL "
            "THEN COALESCE(p.purchases, 0) + COALESCE(d.amount, 0) END AS revenue"
        )
    # (the labels are in the select list, before the joins)
    return f"SELECT {', '.join(selected)} FROM {' '.join(joins)}", [
        *(label for name in [*names, *extra] for label in labels.get(name, [])),
        *params,
    ]


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


def _sums(outcomes: Sequence[str], revenue: bool, *, start: datetime, now: datetime) -> list[tuple[str, QuerySet]]:
    """(alias, rows with a contact_id, at most one per contact) of the sums the outcomes read:
    p, purchases (the sum of their values); d, won deals (the sum of amounts)."""
    sets: list[tuple[str, QuerySet]] = []
    if "converted" in outcomes or revenue:
        purchases = _activities(start, now).filter(kind=ActivityKind.PURCHASE).values("contact_id")
        sets.append(("p", purchases.annotate(purchases=Sum("value"))))
        won = Deal.objects.filter(stage=DealStage.WON, closed_at__gte=start, closed_at__lte=now, contact__isnull=False)
        sets.append(("d", won.order_by().values("contact_id").annotate(amount=Sum("amount"))))
    return sets


def _id_sets(outcomes: Sequence[str], *, start: datetime, now: datetime, campaign: str) -> dict[str, list[QuerySet]]:
    """alias: [contact ids] of the outcomes that are only flags, read as bit masks (id_words): e,
    contacts with an engagement activity; r, with a click (on the campaign). At 1M contacts the
    1.5M engagement activities of 700k contacts, deduplicated into a hash of ids and joined by
    id, took 1.0 s to build and 0.5 s to probe; as masks, 0.46 s and 0.44 s (EXPLAIN ANALYZE)."""
    sets: dict[str, list[QuerySet]] = {}
    if "engaged" in outcomes:
        sets["e"] = [_activities(start, now).filter(kind__in=ENGAGEMENT_KINDS).values("contact_id")]
    if "responded" in outcomes:
        clicks = _activities(start, now).filter(kind=ActivityKind.EMAIL_CLICK)
        if campaign:
            clicks = clicks.filter(campaign__iexact=campaign)
        sets["r"] = [clicks.values("contact_id")]
    return sets


def _activities(start: datetime, now: datetime) -> QuerySet[Activity]:
    return Activity.objects.filter(occurred_at__gte=start, occurred_at__lte=now).order_by()


def _money(value: Decimal | float | None) -> Decimal:
    """A sum as the ORM reads a decimal column: exact on PostgreSQL; on SQLite, whose sums of
    decimals are floating point, rounded to cents as Django's converter rounds them."""
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    return Context(prec=15).create_decimal_from_float(value).quantize(_CENT)
