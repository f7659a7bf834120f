"""Planner statistics in tests: make tables look freshly loaded, ask whether they were analysed, EXPLAIN."""

from django.db import connection
from django.db.models import Model, QuerySet


def forget_statistics(*models: type[Model]) -> None:
    """As if the tables had just been bulk-loaded: no statistics and, on PostgreSQL, no idea of their
    size (reltuples -1, as before any ANALYZE or VACUUM). Undone with the test's transaction."""
    with connection.cursor() as cursor:
        for model in models:
            table = model._meta.db_table
            if connection.vendor == "postgresql":
                cursor.execute("DELETE FROM pg_statistic WHERE starelid = %s::regclass", [table])
                cursor.execute(
                    "UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = %s::regclass "
                    "OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass)",
                    [table, table],
                )
            elif _sqlite_has_statistics_table(cursor):
                cursor.execute("DELETE FROM sqlite_stat1 WHERE tbl = %s", [table])


def has_statistics(model: type[Model]) -> bool:
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT count(*) FROM pg_statistic WHERE starelid = %s::regclass", [table])
        elif _sqlite_has_statistics_table(cursor):
            cursor.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = %s", [table])
        else:
            return False
        return cursor.fetchone()[0] > 0


def plan(queryset: QuerySet) -> str:
    """PostgreSQL's plan for the queryset's statement, as EXPLAIN prints it."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def _sqlite_has_statistics_table(cursor) -> bool:
    cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
    return cursor.fetchone()[0] > 0
