"""Make a segment's stored membership equal to a target set of contacts, inside the database.

The target arrives as a queryset and is spliced into the statement as SQL; the diff against the
stored members is a FULL JOIN evaluated by the database, and only the adds and removes are
written, each with its MembershipChange row. No member ids travel through Python, so memory stays
flat however large the segment.

PostgreSQL does it all in one statement with data-modifying CTEs. The portable path (SQLite)
writes the history rows from the diff first and then applies them to the membership table,
finding them again by (segment, changed_at), which the refresh lock makes unique to this run.
Both run inside the caller's transaction, under the caller's segment lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet

from contacts.models import Contact
from segments.models import ChangeKind, ChangeReason, Membership, MembershipChange, Segment

MEMBERSHIP = Membership._meta.db_table
CHANGE = MembershipChange._meta.db_table


# The diff: one row per contact to add (joined) or remove. Portable: the FULL JOIN's unmatched rows.
# PostgreSQL: the same rows, gathered in the same single pass over the FULL JOIN that also counts
# the target (the segment's new size), so the target is read once and never stored.
_DIFF = {
    False: """diff AS MATERIALIZED (
            SELECT COALESCE(t.id, c.contact_id) AS contact_id, (t.id IS NOT NULL) AS joined
            FROM target t FULL JOIN current_members c ON c.contact_id = t.id
            WHERE t.id IS NULL OR c.contact_id IS NULL
        )""",
    True: """compared AS MATERIALIZED (
            SELECT count(t.id) AS size,
                array_agg(COALESCE(t.id, c.contact_id)) FILTER (WHERE t.id IS NULL OR c.contact_id IS NULL) AS ids,
                array_agg(t.id IS NOT NULL) FILTER (WHERE t.id IS NULL OR c.contact_id IS NULL) AS joins
            FROM target t FULL JOIN current_members c ON c.contact_id = t.id
        ),
        diff AS MATERIALIZED (
            SELECT d.contact_id, d.joined FROM compared, unnest(compared.ids, compared.joins) AS d(contact_id, joined)
        )""",
}


@dataclass(frozen=True)
class DiffResult:
    added: int
    removed: int
    size: int | None  # members after the diff; None for a diff scoped to some contacts


def apply_target(
    segment: Segment,
    target: QuerySet[Contact] | tuple[str, list],
    *,
    changed_at: datetime,
    reason: str | None,
    scope: list[int] | None = None,
) -> DiffResult:
    """Write the joins and leaves that turn the stored membership into `target` (a queryset, or
    its SQL and params, see targets.target_sql).

    `reason` names the reason for every change (initial build, rule edited); None lets each row
    say whether its parent's membership caused it ('parent') or the rule did ('rule').
    `scope` restricts both sides to those contact ids (refresh_contacts).
    """
    if scope is not None:
        if not scope:
            return DiffResult(added=0, removed=0, size=None)
        assert not isinstance(target, tuple), "a scoped diff narrows a queryset"
        target = target.filter(pk__in=scope)
    if isinstance(target, tuple):
        target_sql, target_params = target
    else:
        target_sql, target_params = target.order_by().values("pk").query.sql_with_params()
    current_sql, current_params = _current_members_sql(segment, scope)
    reason_sql, reason_params = _reason_sql(segment, reason)
    stamp = connection.ops.adapt_datetimefield_value(changed_at)
    diff_sql = f"""
        target(id) AS ({target_sql}),
        current_members(contact_id) AS ({current_sql}),
        {_DIFF[connection.vendor == "postgresql"]}"""
    history_columns = f"INSERT INTO {CHANGE} (segment_id, contact_id, kind, reason, changed_at)"
    history_rows = f"SELECT %s, d.contact_id, CASE WHEN d.joined THEN %s ELSE %s END, {reason_sql}, %s FROM diff d"
    params = [
        *target_params,
        *current_params,
        segment.pk,
        ChangeKind.JOIN,
        ChangeKind.LEAVE,
        *reason_params,
        stamp,
    ]
    if connection.vendor == "postgresql":
        history_sql = f"{history_columns} {history_rows}"
        return _apply_postgresql(segment, diff_sql, history_sql, params, stamp=stamp, scoped=scope is not None)
    # INSERT first and WITH inside it, so that the driver reports the inserted row count.
    history_sql = f"{history_columns} WITH {diff_sql} {history_rows}"
    return _apply_portable(segment, history_sql, params, stamp=stamp, scoped=scope is not None)


def _current_members_sql(segment: Segment, scope: list[int] | None) -> tuple[str, list]:
    sql = f"SELECT contact_id FROM {MEMBERSHIP} WHERE segment_id = %s"
    if scope is None:
        return sql, [segment.pk]
    placeholders = ", ".join(["%s"] * len(scope))
    return f"{sql} AND contact_id IN ({placeholders})", [segment.pk, *scope]


def _reason_sql(segment: Segment, reason: str | None) -> tuple[str, list]:
    if reason is not None:
        return "%s", [reason]
    if segment.parent_id is None or segment.last_refresh_started_at is None:
        return "%s", [ChangeReason.RULE]
    # A leave is the parent's doing when the contact is no longer in the parent; a join is when
    # the contact joined the parent after this segment's last full refresh began (it could not
    # have been a member before). Both are one index probe per changed row.
    since = connection.ops.adapt_datetimefield_value(segment.last_refresh_started_at)
    sql = f"""CASE
        WHEN d.joined AND EXISTS (
            SELECT 1 FROM {MEMBERSHIP} p
            WHERE p.segment_id = %s AND p.contact_id = d.contact_id AND p.joined_at > %s) THEN %s
        WHEN NOT d.joined AND NOT EXISTS (
            SELECT 1 FROM {MEMBERSHIP} p WHERE p.segment_id = %s AND p.contact_id = d.contact_id) THEN %s
        ELSE %s END"""
    return sql, [
        segment.parent_id,
        since,
        ChangeReason.PARENT,
        segment.parent_id,
        ChangeReason.PARENT,
        ChangeReason.RULE,
    ]


def _apply_postgresql(
    segment: Segment, diff_sql: str, history_sql: str, params: list, *, stamp: object, scoped: bool
) -> DiffResult:
    """One statement: the diff, both membership writes and the history rows, then the counts.

    Every part reads the same snapshot, so the history insert sees the diff, not the writes, and
    the diff's joins and leaves are exactly the rows inserted and deleted.
    """
    sql = f"""
        WITH {diff_sql},
        history AS ({history_sql}),
        added AS (
            INSERT INTO {MEMBERSHIP} (segment_id, contact_id, joined_at)
            SELECT %s, d.contact_id, %s FROM diff d WHERE d.joined),
        removed AS (
            DELETE FROM {MEMBERSHIP} m USING diff d
            WHERE m.segment_id = %s AND m.contact_id = d.contact_id AND NOT d.joined)
        SELECT count(*) FILTER (WHERE joined), count(*) FILTER (WHERE NOT joined), (SELECT size FROM compared)
        FROM diff"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, segment.pk, stamp, segment.pk])
        added, removed, size = cursor.fetchone()
    return DiffResult(added=added, removed=removed, size=None if scoped else size)


def _apply_portable(segment: Segment, history_sql: str, params: list, *, stamp: object, scoped: bool) -> DiffResult:
    """History rows first (one pass over the target); membership follows from them if any."""
    added = removed = 0
    with connection.cursor() as cursor:
        cursor.execute(history_sql, params)
        if cursor.rowcount:
            cursor.execute(
                f"""INSERT INTO {MEMBERSHIP} (segment_id, contact_id, joined_at)
                SELECT segment_id, contact_id, changed_at FROM {CHANGE}
                WHERE segment_id = %s AND changed_at = %s AND kind = %s""",
                [segment.pk, stamp, ChangeKind.JOIN],
            )
            added = cursor.rowcount
            cursor.execute(
                f"""DELETE FROM {MEMBERSHIP} WHERE segment_id = %s AND contact_id IN (
                    SELECT contact_id FROM {CHANGE} WHERE segment_id = %s AND changed_at = %s AND kind = %s)""",
                [segment.pk, segment.pk, stamp, ChangeKind.LEAVE],
            )
            removed = cursor.rowcount
        if scoped:
            return DiffResult(added=added, removed=removed, size=None)
        cursor.execute(f"SELECT COUNT(*) FROM {MEMBERSHIP} WHERE segment_id = %s", [segment.pk])
        (size,) = cursor.fetchone()
    return DiffResult(added=added, removed=removed, size=size)
