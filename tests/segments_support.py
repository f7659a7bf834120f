"""Helpers shared by the segment tests: who is in a segment, how many rows a block wrote, and the
detail tasks a refresh queues."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection
from django.utils.module_loading import import_string
from django_q.models import OrmQ

from segments.history import DESCRIBE_TASK
from segments.models import Membership, MembershipChange


def member_ids(segment) -> set[int]:
    return set(Membership.objects.filter(segment=segment).values_list("contact_id", flat=True))


def history(segment) -> list[tuple[int, str, str]]:
    """(contact id, kind, reason) of every MembershipChange of the segment, oldest first."""
    rows = MembershipChange.objects.filter(segment=segment).order_by("id")
    return list(rows.values_list("contact_id", "kind", "reason"))


class RowCounter:
    written: int | None = None


@contextmanager
def membership_rows_written() -> Iterator[RowCounter]:
    """Rows inserted, updated or deleted in the membership and history tables inside the block.

    PostgreSQL counts them per transaction in pg_stat_xact_user_tables; SQLite counts every row
    changed on the connection (total_changes), so there the figure covers all tables.
    """
    counter = RowCounter()
    before = _written()
    yield counter
    counter.written = _written() - before


def _written() -> int:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_xact_user_tables
                WHERE relname IN (%s, %s)""",
                [Membership._meta.db_table, MembershipChange._meta.db_table],
            )
            return int(cursor.fetchone()[0])
    connection.ensure_connection()
    return connection.connection.total_changes


def run_queued(func: str = DESCRIBE_TASK) -> list:
    """Run the queued django-q tasks of `func` in this process and transaction, oldest first, as a
    worker would, and take them off the queue; returns their results."""
    results = []
    for queued in OrmQ.objects.order_by("id"):
        task = queued.task
        if task["func"] == func:
            queued.delete()
            results.append(import_string(func)(*task["args"], **task["kwargs"]))
    return results
