"""Re-evaluate many segments for a few contacts in a handful of statements (PostgreSQL).

`refresh_contacts`' fast path. Segments are grouped into levels of the dependency graph (a
segment comes one level after its parent and the segments its rule reads); each level is one
statement: every segment's target among the given contacts (UNION ALL), one FULL JOIN diff
against their stored memberships, then the history rows, the membership writes and the size
updates and the daily rollup (segments/rollup.py) as data-modifying CTEs. A level reads the
memberships the levels before it wrote.

What made the per-segment path slow at 1M contacts was fixed cost, not work: planning and a round
trip per segment, and compiling each rule through the ORM on every call (about half a
millisecond of Python per segment). So each segment's scoped SQL is compiled once per process and
reused while its rule, parent, stored thresholds and the field registry stay the same, with the
parameters that depend on `now` shifted to each call's (segments/statements.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models.expressions import RawSQL
from django.utils import timezone

from segments.diffing import CHANGE, MEMBERSHIP
from segments.graph import Graph
from segments.models import ChangeKind, ChangeReason, Segment
from segments.rollup import ADD_TO_DAY, DAY
from segments.rules.registry import Field
from segments.statements import compiled_sql
from segments.targets import target_contacts

SCOPE = "scoped_contacts"
SEGMENT_TABLE = Segment._meta.db_table


def levels(segment_ids: list[int], graph: Graph) -> list[list[int]]:
    """`segment_ids` (in topological order) grouped so each one comes after all it depends on."""
    depth: dict[int, int] = {}
    for pk in segment_ids:
        depth[pk] = 1 + max((depth[dep] for dep in graph.get(pk, ()) if dep in depth), default=-1)
    grouped: list[list[int]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for pk in segment_ids:
        grouped[depth[pk]].append(pk)
    return grouped


def apply_level(
    segments: list[Segment],
    contact_ids: list[int],
    *,
    now: datetime,
    fields: dict[str, Field],
    fields_key: int,
    changed_at: datetime,
) -> dict[int, tuple[int, int]]:
    """One statement: refresh `segments` (no one depending on another) for these contacts.

    Returns (added, removed) for each segment whose membership changed.
    """
    targets, params = [], [contact_ids]
    for segment in segments:
        sql, segment_params = scoped_sql(segment, now=now, fields=fields, fields_key=fields_key)
        targets.append(f"SELECT %s::bigint AS segment_id, t.contact_id FROM ({sql}) AS t(contact_id)")
        params += [segment.pk, *segment_params]
    sql = f"""
        WITH {SCOPE}(id) AS (SELECT unnest(%s::bigint[])),
        target AS MATERIALIZED ({" UNION ALL ".join(targets)}),
        refreshed(segment_id, parent_id, since, reason) AS (
            SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::text[])),
        current_members AS (
            SELECT m.segment_id, m.contact_id FROM {MEMBERSHIP} m
            WHERE m.segment_id IN (SELECT segment_id FROM refreshed) AND m.contact_id IN (SELECT id FROM {SCOPE})),
        diff AS MATERIALIZED (
            SELECT COALESCE(t.segment_id, c.segment_id) AS segment_id,
                   COALESCE(t.contact_id, c.contact_id) AS contact_id, (t.contact_id IS NOT NULL) AS joined
            FROM target t FULL JOIN current_members c ON c.segment_id = t.segment_id AND c.contact_id = t.contact_id
            WHERE t.contact_id IS NULL OR c.contact_id IS NULL),
        history AS (
            INSERT INTO {CHANGE} (segment_id, contact_id, kind, reason, changed_at)
            SELECT d.segment_id, d.contact_id, CASE WHEN d.joined THEN %s ELSE %s END, {_REASON}, %s
            FROM diff d JOIN refreshed r ON r.segment_id = d.segment_id),
        added AS (
            INSERT INTO {MEMBERSHIP} (segment_id, contact_id, joined_at)
            SELECT d.segment_id, d.contact_id, %s FROM diff d WHERE d.joined),
        removed AS (
            DELETE FROM {MEMBERSHIP} m USING diff d
            WHERE m.segment_id = d.segment_id AND m.contact_id = d.contact_id AND NOT d.joined),
        counts AS (
            SELECT segment_id, count(*) FILTER (WHERE joined) AS added, count(*) FILTER (WHERE NOT joined) AS removed
            FROM diff GROUP BY segment_id),
        sizes AS (
            UPDATE {SEGMENT_TABLE} s SET size = s.size + c.added - c.removed FROM counts c WHERE s.id = c.segment_id),
        days AS (
            INSERT INTO {DAY} (segment_id, day, joins, leaves, size)
            SELECT c.segment_id, %s, c.added, c.removed, s.size + c.added - c.removed
            FROM counts c JOIN {SEGMENT_TABLE} s ON s.id = c.segment_id
            {ADD_TO_DAY})
        SELECT segment_id, added, removed FROM counts"""
    params += [
        [s.pk for s in segments],
        [s.parent_id for s in segments],
        [s.last_refresh_started_at for s in segments],
        [ChangeReason.RULE_EDITED if s.rule_edited_at is not None else None for s in segments],
        ChangeKind.JOIN,
        ChangeKind.LEAVE,
        ChangeReason.PARENT,
        ChangeReason.PARENT,
        ChangeReason.RULE,
        changed_at,
        changed_at,
        timezone.localdate(changed_at),  # the daily rollup (segments/rollup.py), as count_changes keeps it
    ]
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return {segment_id: (added, removed) for segment_id, added, removed in cursor.fetchall()}


class _PreparingCursor(psycopg.Cursor):
    """Binds parameters server-side and prepares every statement (psycopg keeps them per connection)."""

    def execute(self, query, params=None, *, prepare=None, binary=None):  # type: ignore[no-untyped-def]
        return super().execute(query, params, prepare=True, binary=binary)


class _LoggedCursor(CursorDebugWrapper):
    """Logs the statement as written: a prepared execution leaves psycopg no query text to show."""

    def execute(self, sql, params=None):  # type: ignore[no-untyped-def]
        with self.debug_sql(sql, params):
            return self._execute_with_wrappers(sql, params, many=False, executor=self._execute)


@contextmanager
def prepared_cursor() -> Iterator[CursorWrapper]:
    """A cursor whose statements PostgreSQL plans once per connection and reuses the plan.

    A level statement takes far longer to plan than to run for a few contacts. The project's
    connections bind client-side and prepare nothing (Django's default, for transaction-mode
    poolers older than PgBouncer 1.21), so this one cursor opts in while it runs; it is wrapped
    like Django's own, so the statement is logged and counted. The caller sets
    plan_cache_mode so that the generic plan is used from the second call on.
    """
    connection.ensure_connection()
    raw = connection.connection
    threshold, raw.prepare_threshold = raw.prepare_threshold, 0  # None would refuse to prepare at all
    cursor = _PreparingCursor(raw)
    wrapped = _LoggedCursor(cursor, connection) if connection.queries_logged else connection.make_cursor(cursor)
    try:
        yield wrapped
    finally:
        cursor.close()
        raw.prepare_threshold = threshold


def use_generic_plans() -> None:
    """For the rest of the transaction, prepared statements run a generic plan (see prepared_cursor)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")


# Why a row changed, as the full refresh says it (diffing._reason_sql): the rule was edited; else
# the parent's doing when the contact left the parent, or joined it after this segment's last
# full refresh began; else the rule's.
_REASON = f"""COALESCE(r.reason, CASE
    WHEN r.parent_id IS NULL THEN NULL
    WHEN d.joined AND EXISTS (
        SELECT 1 FROM {MEMBERSHIP} p
        WHERE p.segment_id = r.parent_id AND p.contact_id = d.contact_id AND p.joined_at > r.since) THEN %s
    WHEN NOT d.joined AND NOT EXISTS (
        SELECT 1 FROM {MEMBERSHIP} p WHERE p.segment_id = r.parent_id AND p.contact_id = d.contact_id) THEN %s
    END, %s)"""


# -- compiled statements ---------------------------------------------------------------------


def scoped_sql(segment: Segment, *, now: datetime, fields: dict[str, Field], fields_key: int) -> tuple[str, list]:
    """The segment's target among the contacts of the statement's scope CTE, as SQL and params
    (compiled once per process, segments/statements.py).

    Raises InvalidRule when the rule no longer validates.
    """
    key = (
        "scoped",
        segment.pk,
        json.dumps(segment.rule, sort_keys=True),
        segment.parent_id,
        json.dumps(segment.percent_thresholds, sort_keys=True),
        fields_key,
    )
    return compiled_sql(key, lambda at: _compile(segment, now=at, fields=fields), now=now)


def _compile(segment: Segment, *, now: datetime, fields: dict[str, Field]) -> tuple[str, list]:
    scope = RawSQL(f"SELECT id FROM {SCOPE}", [])
    target = target_contacts(segment, now=now, fields=fields, contact_ids=scope, thresholds=segment.percent_thresholds)
    sql, params = target.order_by().values("pk").query.sql_with_params()
    return sql, list(params)
