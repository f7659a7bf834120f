"""Topic and product lists of a full run on PostgreSQL, summed in the one pass over activities.

The general statement (contacts/metrics/sql.py) finds each contact's topic sums by grouping the
activities by (contact, topic): at 1M contacts and 10M activities that is a 4.4M-group hash table
(about 9 s), then a sort of those 4.4M rows, ranking windows and a pivot (about 25 s more), and
the same again for products. Real topic and product vocabularies are short (a content taxonomy, a
product line), so a full run first reads the distinct spellings (`discover`: one scan, a few
groups) and, when at most PIVOT_LIMIT names remain after lower-casing, sums each name in its own
column of the per-contact aggregate (`act`) instead. Each contact's names are then ranked within
its row (K names: K * K comparisons, no sort) and the lists built from the ranked columns.

The results are the same values, bit for bit, as the general statement's: each name's sum adds
the same terms in the same (scan) order; a name's rank is 1 + the names with a greater sum or an
equal sum and an earlier name in the database's order (ORDER BY weight DESC, name); a contact's
topic total adds the sums strongest first, as the window SUM over the sorted rows did; shares and
intents are rounded by the same expressions. tests/test_metrics_vocabulary.py runs both
statements on the same data and compares every column.

Longer vocabularies, incremental runs and SQLite use the general statement. A name that first
appears after `discover` read the activities would be missed until the next run, so a run in
parts reads both in one snapshot (contacts/metrics/parallel.py); a run inside a caller's
transaction reads them in two statements of that transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from django.db.backends.utils import CursorWrapper

PIVOT_LIMIT = 16
TOP_N = 5  # topics and products listed per contact (both statements)


@dataclass(frozen=True)
class Term:
    name: str  # lower-cased, as stored in the lists
    spellings: tuple[str, ...]  # the raw values of Activity.topic / .product that fold to it


@dataclass(frozen=True)
class Vocabulary:
    """The names a full run pivots: None for a list longer than PIVOT_LIMIT (the general path)."""

    topics: tuple[Term, ...] | None
    products: tuple[Term, ...] | None


NONE = Vocabulary(topics=None, products=None)


def discover(cursor: CursorWrapper, *, product_kinds: str, params: dict) -> Vocabulary:
    """The distinct topics and products of the activities up to the as-of time, in one scan."""
    cursor.execute(
        f"""SELECT a.topic, CASE WHEN a.kind IN ({product_kinds}) THEN a.product ELSE '' END
        FROM contacts_activity a WHERE a.occurred_at <= %(as_of)s GROUP BY 1, 2""",
        params,
    )
    pairs = cursor.fetchall()
    topics = sorted({topic for topic, _ in pairs if topic})
    products = sorted({product for _, product in pairs if product})
    return Vocabulary(topics=_terms(cursor, topics), products=_terms(cursor, products))


def _terms(cursor: CursorWrapper, spellings: list[str]) -> tuple[Term, ...] | None:
    """Spellings grouped by their lower-cased form, names in the database's order; None if too many
    (or none: the general statement has nothing to group then)."""
    if not spellings or len(spellings) > 4 * PIVOT_LIMIT:
        return None
    cursor.execute(
        "SELECT LOWER(s) AS name, s FROM unnest(CAST(%s AS text[])) AS s ORDER BY name, s",
        [spellings],
    )
    grouped: dict[str, list[str]] = {}
    for name, spelling in cursor.fetchall():
        grouped.setdefault(name, []).append(spelling)
    if len(grouped) > PIVOT_LIMIT:
        return None
    return tuple(Term(name, tuple(spellings)) for name, spellings in grouped.items())


def _param(params: dict, key: str, value: str) -> str:
    params[key] = value
    return f"%({key})s"


def index_column(terms: tuple[Term, ...], column: str, prefix: str, params: dict) -> str:
    """CASE giving an activity's term number (0-based) from its raw `column`, NULL for none."""
    branches = [
        f"WHEN {_param(params, f'{prefix}{i}_{j}', spelling)} THEN {i}"
        for i, term in enumerate(terms)
        for j, spelling in enumerate(term.spellings)
    ]
    return f"CASE {column} {' '.join(branches)} END"


def _ranked(terms: tuple[Term, ...], prefix: str, params: dict, extra: dict[str, str]) -> str:
    """FROM clause over `act`'s {prefix}_w{i} sums (i: term number): per contact with any term, n (how
    many it has) and by position p in 1..K (strongest first; NULL past n) {prefix}_name{p}, its JSON
    string {prefix}_json{p}, {prefix}_value{p}, and for each `extra` name -> column template over {i}: {name}{p}.
    Two fenced layers, so each rank and position is computed once per contact."""
    k = len(terms)
    weights = [f"{prefix}_w{i}" for i in range(k)]

    def rank(i: int) -> str:
        w = weights[i]
        beaten = "".join(
            f" + CASE WHEN {weights[j]} > {w}{f' OR {weights[j]} = {w}' if j < i else ''} THEN 1 ELSE 0 END"
            for j in range(k)
            if j != i
        )
        return f"CASE WHEN {w} IS NOT NULL THEN 1{beaten} END AS r{i}"

    names = [f"CAST({_param(params, f'{prefix}_name{i}', term.name)} AS TEXT)" for i, term in enumerate(terms)]
    quoted = [
        f"CAST({_param(params, f'{prefix}_json{i}', json.dumps(term.name))} AS TEXT)" for i, term in enumerate(terms)
    ]
    by_term = {f"{prefix}_name": names, f"{prefix}_json": quoted, f"{prefix}_value": weights}
    by_term.update({name: [template.format(i=i) for i in range(k)] for name, template in extra.items()})
    positions = [
        f"CASE {' '.join(f'WHEN r{i} = {p} THEN {values[i]}' for i in range(k))} END AS {name}{p}"
        for name, values in by_term.items()
        for p in range(1, k + 1)
    ]
    present = " OR ".join(f"{w} IS NOT NULL" for w in weights)
    count = " + ".join(f"CASE WHEN {w} IS NOT NULL THEN 1 ELSE 0 END" for w in weights)
    sources = [value for name, values in by_term.items() if name in extra for value in values]
    read = ", ".join(["contact_id", *weights, *sources])
    ranks = f"SELECT {read}, {count} AS n, {', '.join(rank(i) for i in range(k))} FROM act WHERE {present} OFFSET 0"
    return f"(SELECT contact_id, n, {', '.join(positions)} FROM ({ranks}) ranks OFFSET 0)"


def _listed(k: int, build: Callable[[range], str]) -> str:
    """CASE over the contact's list length (1..TOP_N, at most k terms): `build` gets the positions to list."""
    lengths = range(1, min(k, TOP_N) + 1)
    return f"CASE LEAST(n, {TOP_N}) {' '.join(f'WHEN {m} THEN {build(range(1, m + 1))}' for m in lengths)} END"


def act_columns(vocabulary: Vocabulary) -> list[str]:
    """The per-term aggregates `act` adds (its input rows carry topic_ix, product_ix and decay)."""
    topics = range(len(vocabulary.topics or ()))
    columns = [f"SUM(a.decay) FILTER (WHERE a.topic_ix = {i}) AS topic_w{i}" for i in topics]
    for i in range(len(vocabulary.products or ())):
        columns.append(f"SUM(a.weight * a.decay) FILTER (WHERE a.product_ix = {i}) AS product_w{i}")
        columns.append(
            "MAX(CASE WHEN a.kind = 'pricing_view' AND a.occurred_at >= %(strong_since)s THEN 1 ELSE 0 END)"
            f" FILTER (WHERE a.product_ix = {i}) AS product_s{i}"
        )
    return columns


def _listing(positions: range, item: Callable[[int], list[str]], brackets: str = "[]") -> str:
    """A jsonb list (or object) of one item per position, built as JSON text and parsed once: several
    times cheaper than nesting jsonb_build_object calls. `item` gives SQL text expressions."""
    parts = [_quote(brackets[0])]
    for position in positions:
        if position > positions.start:
            parts.append(_quote(", "))
        parts += item(position)
    parts.append(_quote(brackets[1]))
    return f"CAST({' || '.join(parts)} AS jsonb)"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def topic_lists(terms: tuple[Term, ...], params: dict) -> str:
    """CTE body `topic_lists` (contact_id, top_topics, topics, topic_shares, top_topic, top_topic_share)
    from `act`'s topic sums, for the contacts with a topic. The total adds the sums strongest first.
    A share in JSON is the text of the float stored in top_topic_share, as jsonb would convert it."""
    k = len(terms)
    total = " + ".join(["topic_value1", *(f"COALESCE(topic_value{p}, 0)" for p in range(2, k + 1))])
    listed = range(1, min(k, TOP_N) + 1)
    shares = ", ".join(_rounded(f"100.0 * topic_value{p} / total", 1, f"share{p}") for p in listed)

    def item(p: int) -> list[str]:
        return [_quote('{"topic": '), f"topic_json{p}", _quote(', "share": '), f"CAST(share{p} AS TEXT)", "'}'"]

    top_topics = _listed(k, lambda ps: _listing(ps, item))
    topics = _listed(k, lambda ps: _listing(ps, lambda p: [f"topic_json{p}"]))
    topic_shares = _listed(
        k, lambda ps: _listing(ps, lambda p: [f"topic_json{p}", "': '", f"CAST(share{p} AS TEXT)"], "{}")
    )
    totals = f"SELECT *, {total} AS total FROM {_ranked(terms, 'topic', params, extra={})} positions OFFSET 0"
    return f"""SELECT contact_id, {top_topics} AS top_topics, {topics} AS topics, {topic_shares} AS topic_shares,
            topic_name1 AS top_topic, CAST(share1 AS DOUBLE PRECISION) AS top_topic_share
        FROM (SELECT *, {shares} FROM ({totals}) totals OFFSET 0) shared"""


def _rounded(expression: str, digits: int, name: str) -> str:
    """`expression` rounded as Dialect.round does, kept NUMERIC without trailing zeros: its text is
    the text jsonb gives the rounded float (12.3, 12 for 12.0), and casting it to DOUBLE PRECISION
    gives Dialect.round's value. A float put into jsonb is printed and parsed back, twice the work."""
    return f"TRIM_SCALE(ROUND(CAST({expression} AS NUMERIC), {digits})) AS {name}"


def product_lists(terms: tuple[Term, ...], params: dict) -> str:
    """CTE body `product_lists` (contact_id, product_interest, products, top_product, top_product_intent,
    strong_items: every product with strong intent, strongest first) from `act`'s product sums."""
    k = len(terms)
    intents = ", ".join(_rounded(f"product_value{p}", 2, f"intent{p}") for p in range(1, min(k, TOP_N) + 1))

    def item(p: int) -> list[str]:
        return [
            _quote('{"product": '),
            f"product_json{p}",
            _quote(', "intent": '),
            f"CAST(intent{p} AS TEXT)",
            _quote(', "strong": '),
            f"CASE WHEN strong{p} = 1 THEN 'true' ELSE 'false' END",
            "'}'",
        ]

    interest = _listed(k, lambda ps: _listing(ps, item))
    products = _listed(k, lambda ps: _listing(ps, lambda p: [f"product_json{p}"]))
    strong = ", ".join(f"CASE WHEN strong{p} = 1 THEN product_json{p} END" for p in range(1, k + 1))
    ranked = _ranked(terms, "product", params, extra={"strong": "product_s{i}"})
    return f"""SELECT contact_id, {interest} AS product_interest, {products} AS products,
            product_name1 AS top_product, CAST(intent1 AS DOUBLE PRECISION) AS top_product_intent,
            CAST('[' || ARRAY_TO_STRING(ARRAY[{strong}], ', ') || ']' AS jsonb) AS strong_items
        FROM (SELECT *, {intents} FROM {ranked} positions OFFSET 0) intents"""
