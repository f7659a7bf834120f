"""Pagination for change lists over tables too big to COUNT(*) on every page view."""

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

# Below this many rows an exact count is cheap enough and reads better.
ESTIMATE_FROM = 100_000


def estimated_rows(queryset: QuerySet) -> int | None:
    """PostgreSQL's planner estimate of the table's row count (None where there is none)."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table]
        )
        row = cursor.fetchone()
    # reltuples is -1 for a table never vacuumed or analysed.
    return row[0] if row and row[0] >= 0 else None


class LargeTablePaginator(Paginator):
    """Counts a filtered list exactly; an unfiltered big PostgreSQL table by the planner's estimate."""

    estimate_from = ESTIMATE_FROM

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            estimate = estimated_rows(queryset)
            if estimate is not None and estimate >= self.estimate_from:
                return estimate
        return super().count
