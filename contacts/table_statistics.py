"""Planner statistics for freshly written tables: every bulk load ends with ANALYZE.

PostgreSQL plans a statement from the statistics ANALYZE gathers. Autovacuum gathers them some
time after a bulk load (or never, where it is off, as on the benchmark server); until then the
planner guesses, and a guess can cost a thousand times the statement (issue 16: after `seed_demo
--contacts 3000`, the first refresh of a `page_view count_lte 1 within 180 days` segment took
70-77 s with the statement compiled then, 72 ms once the activity table was analysed). So seeding
and the benchmark generators analyse what they loaded (`analyze`), and bulk ingest analyses a
table when it wrote more rows than autovacuum would let pass (`analyze_if_stale`).

SQLite has ANALYZE too (its `sqlite_stat1` table); there it runs with `PRAGMA analysis_limit`,
which bounds its work to a sample of each index whatever the table's size.

Public: `analyze(*models)`, `analyze_if_stale(*models, written)`.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Model

# Autovacuum's defaults (autovacuum_analyze_threshold, autovacuum_analyze_scale_factor): writing
# more than 50 rows plus a tenth of a table calls for new statistics.
STALE_AFTER_ROWS = 50
STALE_AFTER_SHARE = 0.1
# Rows of each index SQLite's ANALYZE reads at most (its documentation suggests a few hundred).
SQLITE_ANALYSIS_LIMIT = 1000


def analyze(*models: type[Model]) -> None:
    """ANALYZE the tables of `models`: after a bulk load (seeding, a benchmark's generator)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}")
        for model in models:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def analyze_if_stale(*models: type[Model], written: int) -> list[type[Model]]:
    """ANALYZE each table of `models` into which `written` rows were just written, if they are more
    than 50 plus a tenth of the rows it had when last analysed (PostgreSQL's `reltuples`; none for
    a table never analysed). On SQLite, whenever `written` exceeds 50. Returns the models analysed.
    """
    stale = [model for model in models if written > STALE_AFTER_ROWS + STALE_AFTER_SHARE * _analysed_rows(model)]
    analyze(*stale)
    return stale


def _analysed_rows(model: type[Model]) -> float:
    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cursor:
        # -1 for a table never analysed nor vacuumed.
        cursor.execute("SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        return float(cursor.fetchone()[0])
