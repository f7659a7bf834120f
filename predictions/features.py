"""Point-in-time features: every contact as it was at a cutoff T, read set-based, then encoded.

What a contact looked like at T:
- its lifecycle stage from the stage history (the last change at or before T; before its first
  change, the stage that change left; without any history, the stored stage) and whole days in it;
- activity counts per kind over the 7, 30, 90 and 365 days up to T;
- the behavioural measures `compute_metrics --as-of T` computes (contacts.metrics.compute.measure_ctes);
- demographic, firmographic and technographic fields of the contact and its company, and every
  declared custom property of number, bool, choice or tags type. These have no history and are
  read as stored; the leakage check (predictions/leakage.py) flags any that behave as if written
  after the outcome;
- fields that have no history and move with the outcome (`VOLATILE`) only when the model opts in.

Contacts created after T are not in the population. Activities dated after T are never read.
The rows are fetched in chunks into numpy arrays (categories as integer codes), so a million
contacts fit in a few hundred megabytes.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from contacts.metrics.compute import measure_ctes
from contacts.metrics.dialect import Dialect
from contacts.models import ActivityKind, PropertyDefinition

WINDOWS = (7, 30, 90, 365)
CHUNK = 10_000
# The per-contact aggregate of the activities holds ~75 sums per contact (the measures and the
# counts per kind and window): ~2 KB of hash table each, 2 GB at 1M contacts. With compute_metrics'
# 384MB (x hash_mem_multiplier 2) it spilled 290 MB and the join then sorted 590 MB on disk: one
# read as of now - 90 days at 1M contacts / 10M activities took 106 s on the server; with 1GB, 67 s.
WORK_MEM = "1GB"

MEASURES = [
    "activity_count",
    "engagement_score",
    "past_engagement_score",
    "recency_days",
    "frequency",
    "monetary",
    "recent_activity_count",
    "previous_activity_count",
    "velocity_ratio",
    "open_tickets",
]
# Heavy-tailed counts and amounts enter the model as log(1 + x).
LOGGED = {"activity_count", "frequency", "monetary", "recent_activity_count", "previous_activity_count"}
LOGGED |= {"company.employee_count", "company.annual_revenue", "lifetime_value", "estimated_deal_size"}

# Fields with no history that can change after the cutoff, often because of the outcome itself
# (a customer gets a lifetime value and a customer_since date). Left out unless opted in.
VOLATILE = {
    "lead_score": "c.lead_score",
    "lifetime_value": "c.lifetime_value",
    "estimated_deal_size": "c.estimated_deal_size",
    "product_adoption": "c.product_adoption",
    "customer_since": None,  # as tenure in days at the cutoff (dialect-specific, below)
    "renewal_date": None,  # as days from the cutoff to the renewal
    "do_not_contact": "CASE WHEN c.do_not_contact THEN 1.0 ELSE 0.0 END",
}
VOLATILE_CATEGORIES = {"email_status": "c.email_status"}

CONTACT_NUMBERS = {
    "birth_year": "c.birth_year",
    "company.employee_count": "co.employee_count",
    "company.annual_revenue": "co.annual_revenue",
    "company.is_target_account": "CASE WHEN co.is_target_account THEN 1.0 WHEN co.id IS NULL THEN NULL ELSE 0.0 END",
    "company.is_competitor": "CASE WHEN co.is_competitor THEN 1.0 WHEN co.id IS NULL THEN NULL ELSE 0.0 END",
}
CATEGORIES = {
    "lifecycle_stage": "COALESCE(sb.to_stage, sa.from_stage, c.lifecycle_stage)",
    "job_function": "c.job_function",
    "seniority": "c.seniority",
    "gender": "c.gender",
    "income_band": "c.income_band",
    "education": "c.education",
    "marital_status": "c.marital_status",
    "country": "c.country",
    "company.industry": "LOWER(co.industry)",
}
TAGS = {
    "interests": "c.interests",
    "values": 'c."values"',
    "technologies": "c.technologies",
    "company.technologies": "co.technologies",
}


def count_name(kind: str, days: int) -> str:
    return f"{kind}_{days}d"


COUNTS = [count_name(kind, days) for kind in ActivityKind.values for days in WINDOWS]
# Summed in the measures' one pass over the activities (contacts.metrics.compute.measure_ctes),
# not in a second pass grouped by contact and kind: at 1M contacts / 10M activities that pass
# and its pivot cost ~ as much as all the measures.
COUNT_SUMS = {
    count_name(kind, days): f"COUNT(*) FILTER (WHERE a.kind = '{kind}' AND a.occurred_at >= %(since_{days})s)"
    for kind in ActivityKind.values
    for days in WINDOWS
}


@dataclass(frozen=True)
class StoredMeasures:
    """Where a read takes its behavioural measures from the stored metrics rather than recomputing
    them (predictions/stored_measures.py says when they are current): the rows of the full metrics
    run as of `as_of`, for contacts with no activity above the run's `watermark` (written after it
    began) and no change waiting for the catch-up; the other contacts are not read."""

    as_of: datetime
    watermark: int


def _stored_ctes() -> str:
    """CTEs ending in `measures` with the MEASURES of the contacts StoredMeasures covers, read
    from their stored metrics rows (whose columns hold exactly what measure_ctes computes as of
    the run's as_of); the counts per kind and window are read apart (_stored_counts)."""
    return f"""
    measures AS (
        SELECT m.contact_id, {", ".join(f"m.{name}" for name in MEASURES)}
        FROM contacts_contactmetrics m
        WHERE m.as_of = %(as_of)s
          AND m.contact_id NOT IN (SELECT contact_id FROM contacts_activity WHERE id > %(watermark)s)
          AND m.contact_id NOT IN (SELECT contact_id FROM contacts_pendingchange WHERE derive)
    )"""


# The counts per kind and window of the year before as_of, as one count per contact, kind and the
# narrowest window holding the activity (`code` = kind's index x len(WINDOWS) + window's index), summed
# up the windows in numpy: one aggregate per group costs a third of a row per contact with a
# COUNT(*) FILTER for each of the ~70 counts (1.5-2.5 s against 5-7 s at 100k contacts, load ~9).
_WINDOW_OF = " ".join(f"WHEN a.occurred_at >= %(since_{days})s THEN {index}" for index, days in enumerate(WINDOWS[:-1]))
_KIND_OF = " ".join(f"WHEN '{kind}' THEN {index}" for index, kind in enumerate(ActivityKind.values))
STORED_COUNTS = f"""
    SELECT a.contact_id,
        CAST((CASE a.kind {_KIND_OF} END) * {len(WINDOWS)}
             + (CASE {_WINDOW_OF} ELSE {len(WINDOWS) - 1} END) AS INTEGER) AS code,
        CAST(COUNT(*) AS INTEGER) AS n
    FROM contacts_activity a
    WHERE a.occurred_at <= %(as_of)s AND a.occurred_at >= %(since_{max(WINDOWS)})s
    GROUP BY 1, 2"""
# PostgreSQL packs STORED_COUNTS' rows (~4 per contact) into a few byte strings (one per 65,536
# contact ids) that numpy reads in one go: fetched as Python tuples, or as binary COPY (a message
# per row), 4.2M rows took ~10 s of the client at 1M contacts.
_PACKED_COUNTS = f"""
    SELECT string_agg(int8send(contact_id) || int4send(code) || int4send(n), ''::bytea)
    FROM ({STORED_COUNTS}) counted GROUP BY contact_id / 65536"""
_COUNT_ROW = np.dtype([("contact_id", ">i8"), ("code", ">i4"), ("n", ">i4")])


def _count_rows(params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(contact_id, code, n) of STORED_COUNTS' rows."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_PACKED_COUNTS, params)
            rows = np.frombuffer(b"".join(bytes(packed) for (packed,) in cursor.fetchall()), dtype=_COUNT_ROW)
            return rows["contact_id"].astype(np.int64), rows["code"].astype(np.int64), rows["n"].astype(np.int64)
        cursor.execute(STORED_COUNTS, params)
        table = np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, 3)
    return table[:, 0], table[:, 1], table[:, 2]


def _stored_counts(params: dict, contact_ids: np.ndarray) -> dict[str, np.ndarray]:
    """COUNTS of `contact_ids` as of params' as_of, from STORED_COUNTS."""
    ids, codes, n = _count_rows(params)
    position = np.full(int(contact_ids.max(initial=0)) + 1, -1, dtype=np.int64)
    position[contact_ids] = np.arange(len(contact_ids))
    at = np.where(ids < len(position), position[np.minimum(ids, len(position) - 1)], -1)
    inside = at >= 0
    # Sorted by code once, each code's rows are one slice (a mask per code took 5.6 s at 1M).
    order = np.argsort(codes[inside], kind="stable")
    at, codes, n = at[inside][order], codes[inside][order], n[inside][order]
    bounds = np.searchsorted(codes, np.arange(len(ActivityKind.values) * len(WINDOWS) + 1))
    counts: dict[str, np.ndarray] = {}
    for k, kind in enumerate(ActivityKind.values):
        total = np.zeros(len(contact_ids), dtype=np.float64)
        for w, days in enumerate(WINDOWS):
            rows = slice(bounds[k * len(WINDOWS) + w], bounds[k * len(WINDOWS) + w + 1])
            total += np.bincount(at[rows], weights=n[rows], minlength=len(contact_ids))
            counts[count_name(kind, days)] = total.astype(np.float32)
    return counts


@dataclass
class RawFeatures:
    """Per contact (in `contact_ids` order) the raw values: numbers as float32 with NaN for
    missing, categories as codes into a vocabulary (-1 missing), tags as (row, code) pairs."""

    as_of: datetime
    contact_ids: np.ndarray
    numbers: dict[str, np.ndarray] = field(default_factory=dict)
    categories: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)
    tags: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.contact_ids)

    def sources(self) -> list[str]:
        return [*self.numbers, *self.categories, *self.tags]

    def take(self, rows: np.ndarray) -> RawFeatures:
        """The contacts at positions `rows` (sorted), as a RawFeatures of their own."""
        rows = np.asarray(rows)
        new_index = np.full(len(self), -1, dtype=np.int64)
        new_index[rows] = np.arange(len(rows))
        tags = {}
        for name, (tag_rows, codes, vocabulary) in self.tags.items():
            kept = new_index[tag_rows] >= 0
            tags[name] = (new_index[tag_rows[kept]].astype(np.int32), codes[kept], vocabulary)
        return RawFeatures(
            as_of=self.as_of,
            contact_ids=self.contact_ids[rows],
            numbers={name: values[rows] for name, values in self.numbers.items()},
            categories={name: (codes[rows], vocabulary) for name, (codes, vocabulary) in self.categories.items()},
            tags=tags,
        )


def _properties() -> list[PropertyDefinition]:
    return list(PropertyDefinition.objects.filter(type__in=["number", "bool", "choice", "tags"]).order_by("key"))


def _property(d: Dialect, p: PropertyDefinition, param: str) -> str:
    """Contact property `p` typed in SQL, NULL when absent or of another type: a number or bool as a
    number (bool 1/0), a choice as text, tags as their JSON list. `param` names its key (PostgreSQL)
    or JSON path (SQLite) in the parameters."""
    if d.postgres:
        value, text = f"(c.properties -> %({param})s)", f"(c.properties ->> %({param})s)"
        typed = {
            "number": f"CASE WHEN jsonb_typeof({value}) = 'number' THEN CAST({text} AS DOUBLE PRECISION) END",
            "bool": f"CASE WHEN jsonb_typeof({value}) = 'boolean' THEN CASE WHEN {text} = 'true' THEN 1 ELSE 0 END END",
            "choice": f"CASE WHEN jsonb_typeof({value}) = 'string' THEN {text} END",
            "tags": f"CASE WHEN jsonb_typeof({value}) = 'array' THEN {value} END",
        }
    else:
        kind, value = f"json_type(c.properties, %({param})s)", f"json_extract(c.properties, %({param})s)"
        typed = {
            "number": f"CASE WHEN {kind} IN ('integer', 'real') THEN {value} END",
            "bool": f"CASE {kind} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END",
            "choice": f"CASE WHEN {kind} = 'text' THEN {value} END",
            "tags": f"CASE WHEN {kind} = 'array' THEN {value} END",
        }
    return typed[p.type]


def _select(
    d: Dialect,
    *,
    volatile: list[str],
    contact_ids: list[int] | None,
    params: dict,
    properties: list[PropertyDefinition],
    counted: bool = True,
) -> tuple[str, list[str], list[str], list[str]]:
    """The statement after the measures' CTEs, and its number, category and tag column names
    (custom properties last in each, typed in SQL)."""
    as_of = "%(as_of)s"
    numbers = {name: f"m.{name}" for name in MEASURES}
    numbers["days_in_stage"] = (
        f"CASE WHEN sb.changed_at IS NULL THEN {d.whole_days(as_of, 'c.created_at')}"
        f" ELSE {d.whole_days(as_of, 'sb.changed_at')} END"
    )
    if counted:
        numbers.update({name: f"m.{name}" for name in COUNTS})
    numbers.update(CONTACT_NUMBERS)
    cutoff_date = d.as_date("%(as_of_date)s")
    for name in volatile:
        if name == "customer_since":
            numbers[name] = (
                f"CASE WHEN c.customer_since IS NULL OR c.customer_since > {cutoff_date} THEN NULL"
                f" ELSE {d.date_days(cutoff_date, 'c.customer_since')} END"
            )
        elif name == "renewal_date":
            numbers[name] = (
                f"CASE WHEN c.renewal_date IS NULL THEN NULL ELSE {d.date_days('c.renewal_date', cutoff_date)} END"
            )
        elif (expression := VOLATILE.get(name)) is not None:
            numbers[name] = expression
    categories = dict(CATEGORIES)
    categories.update({name: sql for name, sql in VOLATILE_CATEGORIES.items() if name in volatile})
    tags = dict(TAGS)
    for index, p in enumerate(properties):
        # Keys are [a-z][a-z0-9_]*: the SQLite path needs no escaping inside its quotes.
        params[f"prop{index}"] = p.key if d.postgres else f'$."{p.key}"'
        sql = _property(d, p, f"prop{index}")
        {"number": numbers, "bool": numbers, "choice": categories, "tags": tags}[p.type][f"props.{p.key}"] = sql
    contact_scope = f"AND {d.id_in('c.id')}" if contact_ids is not None else ""
    history_scope = f"AND {d.id_in('contact_id')}" if contact_ids is not None else ""
    columns = [f"CAST({sql} AS DOUBLE PRECISION)" for sql in numbers.values()]
    columns += list(categories.values()) + list(tags.values())
    statement = f"""
    stage_before AS (
        SELECT contact_id, to_stage, changed_at,
            ROW_NUMBER() OVER (PARTITION BY contact_id ORDER BY changed_at DESC, id DESC) AS rn
        FROM contacts_lifecyclechange WHERE changed_at <= {as_of} {history_scope}
    ),
    stage_after AS (
        SELECT contact_id, from_stage,
            ROW_NUMBER() OVER (PARTITION BY contact_id ORDER BY changed_at, id) AS rn
        FROM contacts_lifecyclechange WHERE changed_at > {as_of} {history_scope}
    )
    SELECT c.id, {", ".join(columns)}
    FROM contacts_contact c
    JOIN measures m ON m.contact_id = c.id
    LEFT JOIN stage_before sb ON sb.contact_id = c.id AND sb.rn = 1
    LEFT JOIN stage_after sa ON sa.contact_id = c.id AND sa.rn = 1
    LEFT JOIN contacts_company co ON co.id = c.company_id
    WHERE c.created_at <= {as_of} {contact_scope}
    ORDER BY c.id"""
    return statement, list(numbers), list(categories), list(tags)


def read_features(
    *,
    as_of: datetime,
    volatile: Collection[str] = (),
    contact_ids: list[int] | None = None,
    stored: StoredMeasures | None = None,
) -> RawFeatures:
    """Every contact created by `as_of` (or those of `contact_ids`), as it was at `as_of`; with
    `stored` (as of `as_of`), the contacts whose stored measures it covers, with those measures."""
    d = Dialect(connection.vendor)
    adapt = connection.ops.adapt_datetimefield_value
    if stored is None:
        ctes, params = measure_ctes(as_of=as_of, contact_ids=contact_ids, extra=COUNT_SUMS)
    else:
        if contact_ids is not None or stored.as_of != as_of:
            raise ValueError("Stored measures are read for every contact they cover, as of their own time.")
        params = {"as_of": adapt(as_of), "watermark": stored.watermark}
        params["as_of_date"] = connection.ops.adapt_datefield_value(timezone.localdate(as_of))
        ctes = _stored_ctes()
    for days in WINDOWS:
        params[f"since_{days}"] = adapt(as_of - timedelta(days=days))
    body, number_names, category_names, tag_names = _select(
        d,
        volatile=list(volatile),
        contact_ids=contact_ids,
        params=params,
        properties=_properties(),
        counted=stored is None,
    )
    statement = f"WITH {ctes}, {body}"
    reader = _Reader(number_names, category_names, tag_names)
    with transaction.atomic():
        if d.postgres:
            # The rows are read through a server-side cursor, which PostgreSQL plans for the first
            # 10% of its rows (nested loops, index walks) unless told all of them will be read; the
            # per-contact aggregate gets WORK_MEM (above).
            with connection.cursor() as session:
                session.execute("SET LOCAL cursor_tuple_fraction = 1.0")
                session.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        with connection.chunked_cursor() as cursor:
            cursor.execute(statement, params)
            while rows := cursor.fetchmany(CHUNK):
                reader.add(rows)
        result = reader.result(as_of)
        if stored is not None:
            result.numbers.update(_stored_counts(params, result.contact_ids))
    return result


class _Codes(dict):
    """Codes of the words of one column in order of first sight: looking up a new word gives it the
    next code. Missing values (None, "") are -1 and no word. Read through `map(codes.__getitem__,
    values)`, a column is coded without a Python call per value (dict's own lookup, `__missing__`
    only for a new word)."""

    def __init__(self) -> None:
        super().__init__({None: -1, "": -1})
        self.size = 0

    def __missing__(self, word: str) -> int:
        code = self[word] = self.size
        self.size += 1
        return code

    def words(self) -> list[str]:
        return [word for word, code in sorted(self.items(), key=lambda item: item[1]) if code >= 0]


# Distinct tag lists (as JSON text) whose codes a reader remembers per column: lists repeat a lot
# (most are empty or one common tool), so each distinct one is parsed once.
TAG_LIST_MEMORY = 100_000


class _Reader:
    """Turns fetched rows into column arrays, chunk by chunk."""

    def __init__(self, numbers: list[str], categories: list[str], tags: list[str]) -> None:
        self.number_names, self.category_names, self.tag_names = numbers, categories, tags
        self.ids: list[np.ndarray] = []
        self.number_blocks: list[np.ndarray] = []
        self.vocabularies: dict[str, _Codes] = {}
        self.codes: dict[str, list[np.ndarray]] = {}
        self.tag_pairs: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self.tag_lists: dict[str, dict[str, tuple[int, ...]]] = {}
        self.count = 0
        for name in categories:
            self.vocabularies[name], self.codes[name] = _Codes(), []
        for name in tags:
            self.vocabularies[name], self.tag_pairs[name], self.tag_lists[name] = _Codes(), ([], []), {}

    def code_column(self, name: str, values: list) -> np.ndarray:
        """Codes of a column's values (str, or None / "" for missing)."""
        return np.fromiter(map(self.vocabularies[name].__getitem__, values), dtype=np.int32, count=len(values))

    def tag_codes(self, name: str, value: object) -> tuple[int, ...]:
        """The codes of one tag list (JSON text or a list): its distinct text and number tags,
        stripped and lower-cased; () for anything but a list."""
        known = self.tag_lists[name]
        if isinstance(value, str) and value in known:
            return known[value]
        parsed = json.loads(value) if isinstance(value, str) else value
        codes: tuple[int, ...] = ()
        if isinstance(parsed, list):
            tags = {str(t).strip().lower() for t in parsed if isinstance(t, str | int) and str(t).strip()}
            vocabulary = self.vocabularies[name]
            codes = tuple(vocabulary[tag] for tag in tags)
        if isinstance(value, str) and len(known) < TAG_LIST_MEMORY:
            known[value] = codes
        return codes

    def add_tag_column(self, name: str, values: list) -> None:
        lists = [self.tag_codes(name, value) for value in values]
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        rows, codes = self.tag_pairs[name]
        rows.append(np.repeat(np.arange(self.count, self.count + len(lists), dtype=np.int32), lengths))
        codes.append(np.fromiter(chain.from_iterable(lists), dtype=np.int32, count=int(lengths.sum())))

    def add(self, rows: list[tuple]) -> None:
        n_numbers = len(self.number_names)
        n_categories = len(self.category_names)
        self.ids.append(np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)))
        self.number_blocks.append(np.array([row[1 : 1 + n_numbers] for row in rows], dtype=np.float32))
        for offset, name in enumerate(self.category_names, start=1 + n_numbers):
            self.codes[name].append(self.code_column(name, [row[offset] for row in rows]))
        for offset, name in enumerate(self.tag_names, start=1 + n_numbers + n_categories):
            self.add_tag_column(name, [row[offset] for row in rows])
        self.count += len(rows)

    def result(self, as_of: datetime) -> RawFeatures:
        ids = np.concatenate(self.ids) if self.ids else np.zeros(0, dtype=np.int64)
        width = len(self.number_names)
        block = np.concatenate(self.number_blocks) if self.number_blocks else np.zeros((0, width), np.float32)
        numbers = {name: np.ascontiguousarray(block[:, i]) for i, name in enumerate(self.number_names)}
        del block

        def vocabulary_of(name: str) -> list[str]:
            return self.vocabularies[name].words()

        categories = {
            name: (np.concatenate(parts) if parts else np.zeros(0, np.int32), vocabulary_of(name))
            for name, parts in self.codes.items()
        }
        tags = {
            name: (_joined(rows), _joined(codes), vocabulary_of(name)) for name, (rows, codes) in self.tag_pairs.items()
        }
        return RawFeatures(as_of=as_of, contact_ids=ids, numbers=numbers, categories=categories, tags=tags)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
