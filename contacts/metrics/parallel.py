"""A full metrics run on PostgreSQL in two halves at once, then ranked as one.

Every measure but the ranks depends on one contact's rows only. So two extra sessions each
compute the raw measures and lists of half of the contacts (contact_id % 2) into an unlogged
staging table at the same time, one per core, both reading one snapshot: the first exports it
(REPEATABLE READ), finds the vocabulary (contacts/metrics/vocabulary.py) and the second imports
it. The run's own transaction then ranks the staged rows together, writes them
(contacts/metrics/replace.py) and drops the staging tables, all under the metrics lock.

The rows are the same, bit for bit, as the single statement's (tests/test_metrics_vocabulary.py):
each session scans the activities from the table's first block (synchronize_seqscans off, as the
single statement does) without parallel workers, so each contact's sums add the same terms in the
same order; ranks count values, whatever order the rows come in.

Only for a run that owns its transaction (the sessions cannot see a caller's uncommitted rows).
A run that fails after staging leaves its staging tables behind; the next run drops them first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from contacts.metrics.dialect import Dialect
from contacts.metrics.sql import TABLE, part_select, product_kinds
from contacts.metrics.vocabulary import discover
from contacts.models import ScoringModel

PARTS = 2
STAGES = [f"{TABLE}_part{index}" for index in range(PARTS)]
# Every session that reads activities for a run: its own memory for the per-contact aggregate, a
# scan from the first block, and no parallel workers (partial sums would add in a varying order).
SESSION_SETTINGS = ("synchronize_seqscans = off", "max_parallel_workers_per_gather = 0")


def staged_source() -> str:
    """The staged rows of every part, as a relation for sql.ranked_select."""
    return "(" + " UNION ALL ".join(f"SELECT * FROM {stage}" for stage in STAGES) + ")"


def drop_stages_sql() -> str:
    return f"DROP TABLE IF EXISTS {', '.join(STAGES)}"


@contextmanager
def _sessions(count: int) -> Iterator[list[BaseDatabaseWrapper]]:
    opened = []
    try:
        for _ in range(count):
            session = connections.create_connection(DEFAULT_DB_ALIAS)
            session.inc_thread_sharing()  # used by one worker thread at a time
            opened.append(session)
        yield opened
    finally:
        for session in opened:
            session.close()


def stage_parts(model: ScoringModel, params: dict, *, work_mem: str) -> None:
    """Fill the staging tables, one part per session."""
    d = Dialect(connection.vendor)
    settings = [*SESSION_SETTINGS, f"work_mem = '{work_mem}'"]
    with _sessions(PARTS) as sessions:
        first = sessions[0]
        with first.cursor() as cursor:
            cursor.execute(drop_stages_sql())  # left by a run that failed (autocommit)
        for session in sessions:
            session.set_autocommit(False)
            with session.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                for setting in settings:
                    cursor.execute(f"SET LOCAL {setting}")
        with first.cursor() as cursor:
            cursor.execute("SELECT pg_export_snapshot()")
            (snapshot,) = cursor.fetchone()
            scan_params = dict(params)
            vocabulary = discover(cursor, product_kinds=product_kinds(scan_params), params=scan_params)
        for session in sessions[1:]:
            with session.cursor() as cursor:
                cursor.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
        errors: list[BaseException] = []

        def run(session: BaseDatabaseWrapper, index: int) -> None:
            statement_params = dict(params)  # the statement adds its own
            select = part_select(d, model, statement_params, vocabulary, (index, PARTS))
            try:
                with session.cursor() as cursor:
                    cursor.execute(f"CREATE UNLOGGED TABLE {STAGES[index]} AS {select}", statement_params)
            except BaseException as error:  # re-raised in the calling thread below
                errors.append(error)

        workers = [
            threading.Thread(target=run, args=(session, index), name=f"metrics-part-{index}")
            for index, session in enumerate(sessions)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if errors:
            for session in sessions:
                session.rollback()
            raise errors[0]
        for session in sessions:
            session.commit()
