"""The few places where PostgreSQL and SQLite spell the analytics SQL differently, side by side."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime

import numpy as np
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction


def local_date(column: str) -> str:
    """SQL for the local calendar day (project time zone) of a timestamp column."""
    zone = settings.TIME_ZONE.replace("'", "''")  # an IANA name checked by settings; quoted all the same
    if connection.vendor == "postgresql":
        return f"(({column}) AT TIME ZONE '{zone}')::date"
    if zone == "UTC":  # SQLite stores UTC text: its first ten characters are the day
        return f"substr({column}, 1, 10)"
    return f"django_datetime_cast_date({column}, '{zone}', 'UTC')"


def instant(value: datetime) -> object:
    """A timestamp as the database compares it (SQLite: naive UTC text, as Django stores it)."""
    return connection.ops.adapt_datetimefield_value(value)


def day_param(value: date) -> object:
    return connection.ops.adapt_datefield_value(value)


def as_date(value: date | str) -> date:
    """A day read back from SQL: PostgreSQL returns a date, SQLite text."""
    return value if isinstance(value, date) else date.fromisoformat(value)


def temporary_table(name: str, columns: str) -> list[str]:
    """Statements that (re)create a connection-private scratch table."""
    return [f"DROP TABLE IF EXISTS {name}", f"CREATE TEMPORARY TABLE {name} ({columns})"]


def binary_collation() -> str:
    """The clause that makes a scratch text column compare bytes: the rollup sorts and groups
    millions of rows on these codes, and PostgreSQL's locale collation costs several times a
    byte compare (SQLite compares bytes already)."""
    return ' COLLATE "C"' if connection.vendor == "postgresql" else ""


@contextmanager
def planner_settings(*, using: str = DEFAULT_DB_ALIAS, **settings: str) -> Iterator[None]:
    """PostgreSQL settings (e.g. enable_sort="off") for the statements inside the block only, on
    the connection `using` (default: the default database's).

    The block is a savepoint. Settings made with set_config(..., is_local) last to the end of the
    whole transaction, even past a released savepoint, so on the way out the block puts back the
    values it found (one statement in, one out); if the block fails, rolling back its savepoint
    undoes them. Elsewhere the block is only the savepoint.
    """
    target = connections[using]
    with transaction.atomic(using=using):
        if target.vendor != "postgresql" or not settings:
            yield
            return
        names = list(settings)
        with target.cursor() as cursor:
            # (current_setting is evaluated before the set_config beside it: the list is computed in order)
            cursor.execute(
                "SELECT " + ", ".join("current_setting(%s), set_config(%s, %s, true)" for _ in names),
                [part for name in names for part in (name, name, settings[name])],
            )
            found = cursor.fetchone()[::2]
        yield
        with target.cursor() as cursor:
            cursor.execute(
                "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in names),
                [part for name, value in zip(names, found, strict=True) for part in (name, value)],
            )


def hashed_grouping() -> AbstractContextManager[None]:
    """Group by hashing, not sorting, for the statements inside (PostgreSQL).

    The per-member period tables group millions of rows on four keys. Their hash tables outgrow
    `work_mem`, so the planner picks a sort, which spilled to disk and took twice as long as a
    hash aggregate that spills in batches (100k contacts, a quarter: 11.1 s sorted, 5.5 s hashed).
    """
    return planner_settings(enable_sort="off")


def merged_joins() -> AbstractContextManager[None]:
    """Join by merging two index orders, not by hashing one side (PostgreSQL), for the statements
    inside.

    The membership intervals look up the current members with no history at all: an anti-join of
    the analysed segments' memberships against their history, both in (segment, contact) index
    order. The planner hashed the history instead (1M contacts, 4.9M rows a side: 5.6 s, its hash
    in two batches, against 2.8 s merged).
    """
    return planner_settings(enable_hashjoin="off")


def packed_numbers(columns: list[str]) -> str:
    """An aggregate of the rows' values of `columns` (SQL numbers) into one text that
    unpack_numbers() reads back exactly, a row per aggregated row with none of them NULL (the
    others are skipped): on PostgreSQL, big-endian float8s in base64 (a million rows of three
    columns arrive in a fraction of a second, where a row each took seconds; text, not bytea, so
    that it unites with the NULLs of other branches of a UNION); on SQLite, the digits that
    round-trip a double. NULL when no row has them all."""
    if connection.vendor == "postgresql":
        # (a NULL makes the row's concatenation NULL, which string_agg skips)
        values = " || ".join(f"float8send(({c})::float8)" for c in columns)
        return f"encode(string_agg({values}, ''::bytea), 'base64')"
    values = " || ',' || ".join(f"printf('%%!.17g', {c})" for c in columns)
    present = " AND ".join(f"{c} IS NOT NULL" for c in columns)
    return f"group_concat(CASE WHEN {present} THEN {values} END, ',')"


def unpack_numbers(value: str | None, width: int) -> np.ndarray:
    """The rows packed_numbers() aggregated, as floats of shape (rows, width)."""
    if value is None:
        return np.empty((0, width))
    if connection.vendor == "postgresql":
        return np.frombuffer(base64.b64decode(value), dtype=">f8").astype(float).reshape(-1, width)
    return np.array(value.split(","), dtype=float).reshape(-1, width)


WORD_BITS = 64  # ids per row of id_words(): a bigint's bits


def id_words(source: str, parts: int) -> str:
    """A query of sets of ids as bit masks, from `source`, a query of rows (id, part) (part from 0
    to parts - 1, an id repeated or not): a row per word `w` that holds an id of some part, the
    ids w * 64 to w * 64 + 63, with a column b0, b1, ... per part whose bit (id mod 64) is set for
    that part's ids (NULL when none). Grouped into a few thousand words, a million ids cost a
    small hash, where a row each (a hash of the ids) costs a cache miss per row; has_id() reads
    them. On SQLite, whose bit_or is missing, each id's bit is summed once (distinct ids; the bit
    of 63, a negative bigint, cannot overflow a sum of other bits)."""
    if connection.vendor == "postgresql":
        bit, rows = "1::bigint << (id & 63)::int", f"({source}) ids"
        return (
            "SELECT id >> 6 AS w, "
            + ", ".join(f"bit_or({bit}) FILTER (WHERE part = {k}) AS b{k}" for k in range(parts))
            + f" FROM {rows} GROUP BY 1"
        )
    bit, rows = "1 << (id & 63)", f"(SELECT DISTINCT id, part FROM ({source}) s) ids"
    sums = ", ".join(f"SUM(CASE WHEN part = {k} THEN {bit} END) AS b{k}" for k in range(parts))
    return f"SELECT id >> 6 AS w, {sums} FROM {rows} GROUP BY 1"


def id_word(id_sql: str) -> str:
    """The word of id_words() that holds the id."""
    return f"(({id_sql}) >> 6)"


def has_id(bits_sql: str, id_sql: str) -> str:
    """A condition: the mask of a word of id_words() holds the id (NULL, not true, for a NULL mask)."""
    one = "1::bigint" if connection.vendor == "postgresql" else "1"
    shift = f"(({id_sql}) & 63)::int" if connection.vendor == "postgresql" else f"(({id_sql}) & 63)"
    return f"(({bits_sql}) & ({one} << {shift})) <> 0"


def analyze(name: str) -> str:
    """Statistics for a freshly filled scratch table (PostgreSQL plans joins on it from them)."""
    return f"ANALYZE {name}"
