"""PostgreSQL fast path for bulk ingest: COPY rows into a temporary table, then one INSERT ... SELECT.

Django's bulk_create prepares every value of every row in Python (tens of microseconds a row for
a wide table); COPY streams them, and the INSERT ... ON CONFLICT does the matching in the database.
Only used on PostgreSQL; contacts/ingest.py keeps a bulk_create path for other databases.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

from django.db import connection, models
from psycopg import sql
from psycopg.types.json import Jsonb


def copy_insert(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Iterable[Sequence],
    *,
    conflict: str | None = None,
    update: Sequence[str] = (),
    returning: Sequence[str] = (),
    insert: Callable[[str], str] | None = None,
    constants: Mapping[str, object] | None = None,
) -> list[tuple]:
    """Insert `rows` (tuples in `columns` order); on a `conflict` column clash update `update` or skip.
    `constants` are columns with the same value in every row (defaults nobody gave), sent once as
    parameters of the INSERT instead of copied with each row.
    `insert`, given the temporary table's name, makes the statement to run instead (it returns what
    it returns), e.g. the activity insert that claims external ids (contacts/partitions.py) or the
    enrichment's UPDATE ... FROM the copied rows (contacts/enrichment.py).

    Returns the `returning` columns of the rows inserted or updated (skipped rows return nothing).
    """
    table = model._meta.db_table
    temp = f"_ingest_{uuid.uuid4().hex[:12]}"
    json_columns = {f.column for f in model._meta.concrete_fields if isinstance(f, models.JSONField)}
    json_positions = [i for i, column in enumerate(columns) if column in json_columns]
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    constants = constants or {}
    fields = {f.column: f for f in model._meta.concrete_fields}
    constant_values = sql.SQL("").join([sql.SQL(", ") + _typed(fields[c], v) for c, v in constants.items()])
    inserted = sql.SQL(", ").join(map(sql.Identifier, [*columns, *constants]))
    with connection.cursor() as django_cursor:
        cursor = django_cursor.cursor
        cursor.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                sql.Identifier(temp), cols, sql.Identifier(table)
            )
        )
        with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(temp), cols)) as copy:
            for row in rows:
                if json_positions:
                    row = list(row)
                    for i in json_positions:
                        row[i] = Jsonb(row[i])
                copy.write_row(row)
        statement: sql.Composable = sql.SQL("INSERT INTO {} ({}) SELECT {}{} FROM {}").format(
            sql.Identifier(table), inserted, cols, constant_values, sql.Identifier(temp)
        )
        if conflict and update:
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in update
            )
            statement += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(sql.Identifier(conflict), assignments)
        elif conflict:
            statement += sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(sql.Identifier(conflict))
        if returning:
            statement += sql.SQL(" RETURNING {}").format(sql.SQL(", ").join(map(sql.Identifier, returning)))
        if insert:
            statement = sql.SQL(insert(temp))
        cursor.execute(statement)
        result = cursor.fetchall() if returning or insert else []
        cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(temp)))
    return result


def _typed(model_field: models.Field, value: object) -> sql.Composable:
    """`value` cast to its column's type, so that PostgreSQL reads a NULL or a JSON text alike as that type."""
    db_type = model_field.db_type(connection)
    if db_type is None:
        raise ValueError(f"{model_field.name} is not a column of its own")
    if isinstance(model_field, models.JSONField) and value is not None:
        value = Jsonb(value)
    return sql.SQL("CAST({} AS {})").format(sql.Literal(value), sql.SQL(db_type))
