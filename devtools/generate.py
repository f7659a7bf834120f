"""Bench data written set-based on PostgreSQL: one INSERT ... SELECT over generate_series per table.

`insert_series(model, columns, count)` writes `count` rows of `model`: each column named in
`columns` takes its SQL expression (over the series number `g`), timestamps `now()`, and every
other column its model default (NULL where the default is None and the column allows it).
`settle(*models)` then does what autovacuum would soon do after such a load.
"""

from __future__ import annotations

from django.db import connection, models

from crmseg_site.model_fields import column

NOW_COLUMNS = {"created_at", "lifecycle_changed_at", "occurred_at"}


def insert_series(model: type[models.Model], columns: dict[str, str], count: int) -> None:
    """INSERT `count` generated rows of `model`; `columns` maps a field name (or attname) to SQL over g."""
    names, values, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        names.append(connection.ops.quote_name(column(model, field.name)))
        name = field.attname if field.attname in columns else field.name
        if name in columns:
            values.append(columns[name])
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False) or name in NOW_COLUMNS:
            values.append("now()")
        elif field.get_default() is None and field.null:
            values.append("NULL")
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(names)}) "
            f"SELECT {', '.join(values)} FROM generate_series(1, %s) AS g",
            [*params, count],
        )


def sql_array(values: list[str]) -> str:
    """A PostgreSQL text array literal of `values`."""
    return "ARRAY[" + ", ".join("'" + value.replace("'", "''") + "'" for value in values) + "]"


def settle(*tables: type[models.Model]) -> None:
    """VACUUM ANALYZE freshly bulk-written tables, as autovacuum would soon after (this server may
    run without it). Without it the first statements to read each page after the bulk write set
    its hint bits and write it out again: the first 0%-churn sweep after a fresh build took 259 s
    instead of ~25 s. Inside a caller's transaction, where VACUUM cannot run, ANALYZE alone."""
    command = "ANALYZE" if connection.in_atomic_block else "VACUUM ANALYZE"
    with connection.cursor() as cursor:
        for model in tables:
            cursor.execute(f"{command} {connection.ops.quote_name(model._meta.db_table)}")
