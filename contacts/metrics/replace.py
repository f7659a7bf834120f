"""Replace every stored metrics row with the rows of a full compute_metrics run.

PostgreSQL: the rows go into a fresh table that then takes the stored table's place, with the
same name, indexes and constraints. Filling an empty table without indexes, then building each
index and checking the foreign key in one pass, is several times cheaper than updating every
row in place (finding each old row, writing a new version into every index, leaving the old
one dead until a VACUUM: the table grows with every run when autovacuum is off or late) or
than TRUNCATE and INSERT (one deferred foreign-key check per row). Readers keep the old rows
while the new ones are computed and wait only while the indexes build, until the commit. A
table that other tables or views depend on cannot be dropped: the swap then fails loudly.

SQLite (small installations): DELETE, then INSERT.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from contacts.metrics.steps import Steps

# Constraints backed by an index first (a foreign key may need one), then the plain indexes,
# then the foreign keys. LIKE ... INCLUDING ALL already copies columns, defaults and CHECKs.
DEFINITIONS = """
    SELECT 'ALTER TABLE ' || quote_ident(%(table)s) || ' ADD CONSTRAINT ' || quote_ident(conname) || ' '
           || pg_get_constraintdef(oid), CASE contype WHEN 'f' THEN 2 ELSE 0 END AS step
    FROM pg_constraint WHERE conrelid = CAST(%(table)s AS regclass) AND contype IN ('p', 'u', 'x', 'f')
    UNION ALL
    SELECT pg_get_indexdef(indexrelid), 1 FROM pg_index
    WHERE indrelid = CAST(%(table)s AS regclass) AND indexrelid NOT IN (
        SELECT conindid FROM pg_constraint WHERE conrelid = CAST(%(table)s AS regclass) AND contype IN ('p', 'u', 'x')
    )
    ORDER BY step"""


def replace_rows(
    connection: BaseDatabaseWrapper, *, table: str, columns: list[str], select: str, params: dict, steps: Steps
) -> None:
    """Make the rows of `select` (its columns in the order of `columns`) the only rows of `table`."""
    names = ", ".join(columns)
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            with steps.timed("compute and insert"):
                cursor.execute(f"DELETE FROM {table}")
                cursor.execute(f"INSERT INTO {table} ({names}) {select}", params)
            return
        fresh = f"{table}_next"
        with steps.timed("compute and insert"):
            cursor.execute(f"CREATE TABLE {fresh} (LIKE {table} INCLUDING ALL EXCLUDING INDEXES)")
            cursor.execute(f"INSERT INTO {fresh} ({names}) {select}", params)
        with steps.timed("swap, indexes and constraints"):
            cursor.execute(DEFINITIONS, {"table": table})
            definitions = [definition for definition, _ in cursor.fetchall()]
            # DROP TABLE refuses a table with deferred foreign-key checks still pending (rows this
            # transaction wrote before); run them now.
            connection.check_constraints()
            cursor.execute(f"DROP TABLE {table}")
            cursor.execute(f"ALTER TABLE {fresh} RENAME TO {table}")
            for definition in definitions:
                cursor.execute(definition)
        with steps.timed("analyze"):
            cursor.execute(f"ANALYZE {table}")
