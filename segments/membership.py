"""The one writer of segment membership: every join and leave is recorded here, in full.

`write_members` makes the stored membership of one or more segments equal to a target set of
contacts within a scope, and does all the bookkeeping a change of membership needs, set-based in
the database: the member rows added and removed, one MembershipChange history row per join and
leave (with its reason, time and the user who made a manual change), each segment's `size`, the
day's rollup row (SegmentDay, read by the charts) and, after commit, the announcement to the
listeners of segments/events.py. Full refreshes, refreshes of some contacts, static list edits and
contact merges all call it; it is the only code that branches on the database for membership.

The scopes:

- the whole segment (`contact_ids=None`, one target): whoever the target names is a member, nobody
  else (a full refresh); the segment's size is the target's count.
- some contacts (`contact_ids` given, any number of targets): only those contacts' membership is
  compared and changed; a target may read the scope's ids through `scoped_contact_ids()`
  (refresh_contacts), and rows outside the scope are ignored.
- a manual edit (`edit_members`): some contacts added to and removed from one segment by hand or
  by a merge, under the segment's lock, with reason `manual` (or the caller's) and the actor. The
  contacts are ids, or a queryset of any size (a whole filtered contact list), which stays in the
  database: it is the scope, and the target is the scope itself (added) or nobody (removed).

PostgreSQL does each call in one statement of data-modifying CTEs (all parts read the same
snapshot: the history rows see the diff, not the writes). SQLite writes the history rows from the
diff first and then the membership from those rows, segment by segment. Both run in the caller's
transaction; the caller holds the segments' locks (segments/locks.py), except for `edit_members`,
which takes its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import count

import psycopg
from django.contrib.auth.models import User
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from contacts.models import Contact
from segments.events import memberships_changed
from segments.locks import lock_segment
from segments.models import ChangeKind, ChangeReason, Membership, MembershipChange, Segment, SegmentDay

_MEMBERSHIP = Membership._meta.db_table
_CHANGE = MembershipChange._meta.db_table
_SEGMENT = Segment._meta.db_table
_DAY = SegmentDay._meta.db_table
# The scope of a call for some contacts, as the statement names it for its targets to read.
_SCOPE = "scoped_contacts"


@dataclass(frozen=True)
class Target:
    """Who should be a member of `segment`: a queryset of contacts, or the SQL and params of one
    selecting contact ids.

    `reason` is recorded on every change; None lets each row say whether the segment's parent
    caused it ('parent': the contact left the parent, or joined it after the segment's last full
    refresh began) or the rule did ('rule'). The segment needs its pk, `parent_id` and
    `last_refresh_started_at`.
    """

    segment: Segment
    contacts: QuerySet[Contact] | tuple[str, list]
    reason: str | None = None


@dataclass(frozen=True)
class Written:
    """What a call changed in one segment; `size` is its member count after the call (None for an
    unchanged segment of a call for some contacts, whose size is not read)."""

    added: int
    removed: int
    size: int | None

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def scoped_contact_ids() -> RawSQL:
    """The ids of the contacts a call for some contacts is scoped to, as a subquery a target can
    filter on (`matching_contacts(..., contact_ids=scoped_contact_ids())`)."""
    return RawSQL(f"SELECT id FROM {_SCOPE}", [])


def write_members(
    targets: Sequence[Target],
    *,
    contact_ids: Collection[int] | QuerySet[Contact] | None = None,
    changed_at: datetime,
    actor: User | None = None,
    repeated: bool = False,
) -> dict[int, Written]:
    """Make each target segment's membership equal to its target within the scope; segment id ->
    what was written, for every target.

    `contact_ids` None is the whole segment (then exactly one target); otherwise only these
    contacts' membership is compared and changed (ids, or a queryset read inside the statement).
    `changed_at` is the time of every history row and every new member's `joined_at`; `actor` the
    user who made a manual change (None for the refreshes), recorded on its history rows. The
    caller holds the segments' locks in a transaction; listeners hear of the segments that changed
    once it commits. `repeated`: the same statement runs again and again with other contacts
    (refresh_contacts): PostgreSQL plans it once per connection (see use_generic_plans).
    """
    if contact_ids is None and len(targets) != 1:
        raise ValueError("a write of the whole segment takes exactly one target")
    ids: list[int] | QuerySet[Contact] | None
    if contact_ids is None or isinstance(contact_ids, QuerySet):
        ids = contact_ids
    else:
        ids = sorted({int(pk) for pk in contact_ids})
    if not targets or (isinstance(ids, list) and not ids):
        return {target.segment.pk: Written(0, 0, None) for target in targets}
    actor_id = actor.pk if actor is not None else None
    if connection.vendor == "postgresql":
        written = _write_postgresql(targets, ids, changed_at=changed_at, actor_id=actor_id, repeated=repeated)
    else:
        written = {t.segment.pk: _write_portable(t, ids, changed_at=changed_at, actor_id=actor_id) for t in targets}
    memberships_changed(pk for pk, figures in written.items() if figures.changed)  # after commit
    return written


def edit_members(
    segment: Segment,
    *,
    add: Collection[int] | QuerySet[Contact] = (),
    remove: Collection[int] | QuerySet[Contact] = (),
    reason: str = ChangeReason.MANUAL,
    actor: User | None = None,
) -> Written:
    """A manual edit of one segment's members: `add` join (those that exist and are not members
    yet), `remove` leave (where they are members), each change recorded with `reason` (manual for
    a static list edit, or e.g. a merge's) and `actor`, the user who made it. Takes the segment's
    lock in a transaction of its own (or the caller's). A contact in both sets is refused.

    `add` or `remove` may be a queryset of contacts (a filtered list of any size): the edit is
    then one statement whatever its size, no id read into Python, and the other side is empty.
    """
    scope: Collection[int] | QuerySet[Contact]
    if isinstance(add, QuerySet) or isinstance(remove, QuerySet):
        selection, other = (add, remove) if isinstance(add, QuerySet) else (remove, add)
        assert isinstance(selection, QuerySet)  # one of the two is, by the test above
        if isinstance(other, QuerySet) or other:
            raise ValueError("a queryset of contacts is either added or removed, with nothing on the other side")
        scope = selection.order_by()
        target = Target(segment, _scope_target() if selection is add else Contact.objects.none(), reason=reason)
    else:
        joining, leaving = {int(pk) for pk in add}, {int(pk) for pk in remove}
        if joining & leaving:
            raise ValueError(f"contacts both added and removed: {sorted(joining & leaving)}")
        scope = joining | leaving
        target = Target(segment, Contact.objects.filter(pk__in=sorted(joining)), reason=reason)
    with transaction.atomic():
        lock_segment(segment.pk)
        written = write_members([target], contact_ids=scope, changed_at=timezone.now(), actor=actor)
    return written[segment.pk]


def _scope_target() -> tuple[str, list]:
    """Everyone in the scope, once each (a filtered queryset may name a contact twice): the target
    of adding a queryset, read from the scope the statement holds."""
    return f"SELECT DISTINCT id FROM {_SCOPE}", []


# -- the statements ---------------------------------------------------------------------------

# Why a row changed: the target's reason; else the parent's doing when the contact is no longer in
# the parent, or joined it after the segment's last full refresh began (it could not have been a
# member before); else the rule's. Both are one index probe per changed row. Params: parent, parent, rule.
_REASON = f"""COALESCE(r.reason, CASE
    WHEN r.parent_id IS NULL OR r.since IS NULL THEN NULL
    WHEN d.joined AND EXISTS (
        SELECT 1 FROM {_MEMBERSHIP} p
        WHERE p.segment_id = r.parent_id AND p.contact_id = d.contact_id AND p.joined_at > r.since) THEN %s
    WHEN NOT d.joined AND NOT EXISTS (
        SELECT 1 FROM {_MEMBERSHIP} p WHERE p.segment_id = r.parent_id AND p.contact_id = d.contact_id) THEN %s
    END, %s)"""
# The history rows of the diff `d`, each joined to its segment's `r` (segment_id, parent_id, since,
# reason). Params: join, leave, the three of _REASON, changed_at, actor.
_HISTORY_ROWS = f"""SELECT d.segment_id, d.contact_id, CASE WHEN d.joined THEN %s ELSE %s END, {_REASON}, %s, %s
    FROM diff d JOIN written_segments r ON r.segment_id = d.segment_id"""
_HISTORY_INSERT = f"INSERT INTO {_CHANGE} (segment_id, contact_id, kind, reason, changed_at, changed_by_id)"
# How a day's rollup row takes more changes: joins and leaves add up, the size is the latest.
_ADD_TO_DAY = f"""ON CONFLICT (segment_id, day) DO UPDATE SET joins = {_DAY}.joins + excluded.joins,
    leaves = {_DAY}.leaves + excluded.leaves, size = excluded.size"""


def _history_params(changed_at: object, actor_id: int | None) -> list:
    return [
        ChangeKind.JOIN,
        ChangeKind.LEAVE,
        ChangeReason.PARENT,
        ChangeReason.PARENT,
        ChangeReason.RULE,
        changed_at,
        actor_id,
    ]


def _target_sql(target: Target) -> tuple[str, list]:
    return _select_sql(target.contacts)


def _select_sql(contacts: QuerySet[Contact] | tuple[str, list]) -> tuple[str, list]:
    """The SQL and params of a statement selecting these contacts' ids."""
    if isinstance(contacts, tuple):
        sql, params = contacts
        return sql, list(params)
    try:
        query_sql, query_params = contacts.order_by().values("pk").query.sql_with_params()
    except EmptyResultSet:  # e.g. pk__in=[]: nobody
        return "SELECT CAST(NULL AS bigint) WHERE 1 = 0", []
    return query_sql, list(query_params)


# PostgreSQL. The whole segment: the target is read once, in the same pass over the FULL JOIN
# that counts it (the segment's new size) and gathers the diff, and is never stored.
_PG_WHOLE = """target(id) AS ({target}),
    current_members(contact_id) AS (SELECT contact_id FROM {membership} WHERE segment_id = %s),
    compared AS MATERIALIZED (
        SELECT count(t.id) AS size,
            array_agg(COALESCE(t.id, c.contact_id)) FILTER (WHERE t.id IS NULL OR c.contact_id IS NULL) AS ids,
            array_agg(t.id IS NOT NULL) FILTER (WHERE t.id IS NULL OR c.contact_id IS NULL) AS joins
        FROM target t FULL JOIN current_members c ON c.contact_id = t.id),
    diff AS MATERIALIZED (
        SELECT %s::bigint AS segment_id, d.contact_id, d.joined
        FROM compared, unnest(compared.ids, compared.joins) AS d(contact_id, joined))"""
_PG_WHOLE_FIGURES = """SELECT %s::bigint AS segment_id, (SELECT count(*) FROM added) AS added,
        (SELECT count(*) FROM removed) AS removed, (SELECT size FROM compared) AS size"""
# Some contacts: every segment's target among them (UNION ALL), one FULL JOIN against their stored
# memberships; sizes move by the joins and leaves.
_PG_SCOPED = """{scope}(id) AS ({scope_sql}),
    target AS MATERIALIZED (SELECT segment_id, contact_id FROM ({targets}) AS t
        WHERE contact_id IN (SELECT id FROM {scope})),
    current_members AS (
        SELECT m.segment_id, m.contact_id FROM {membership} m
        WHERE m.segment_id IN (SELECT segment_id FROM written_segments)
            AND m.contact_id IN (SELECT id FROM {scope})),
    diff AS MATERIALIZED (
        SELECT COALESCE(t.segment_id, c.segment_id) AS segment_id,
            COALESCE(t.contact_id, c.contact_id) AS contact_id, (t.contact_id IS NOT NULL) AS joined
        FROM target t FULL JOIN current_members c ON c.segment_id = t.segment_id AND c.contact_id = t.contact_id
        WHERE t.contact_id IS NULL OR c.contact_id IS NULL)"""
_PG_SCOPED_FIGURES = f"""SELECT c.segment_id, c.added, c.removed, s.size + c.added - c.removed AS size
        FROM (SELECT segment_id, count(*) FILTER (WHERE joined) AS added, count(*) FILTER (WHERE NOT joined) AS removed
            FROM (SELECT segment_id, true AS joined FROM added UNION ALL SELECT segment_id, false FROM removed) AS w
            GROUP BY segment_id) AS c
        JOIN {_SEGMENT} s ON s.id = c.segment_id"""
# Then, for either: the history rows, the membership writes, their counts (`figures`, from the
# rows written: so the segment row is updated only once the writes are done, and a refresh waiting
# for a member row does not hold its segment's row, where its heartbeat goes), the sizes and the
# day's rollup.
_PG_WRITES = f"""history AS ({_HISTORY_INSERT} {_HISTORY_ROWS}),
    added AS (
        INSERT INTO {_MEMBERSHIP} (segment_id, contact_id, joined_at)
        SELECT d.segment_id, d.contact_id, %s FROM diff d WHERE d.joined RETURNING segment_id),
    removed AS (
        DELETE FROM {_MEMBERSHIP} m USING diff d
        WHERE m.segment_id = d.segment_id AND m.contact_id = d.contact_id AND NOT d.joined RETURNING m.segment_id),
    figures AS ({{figures}}),
    sizes AS (
        UPDATE {_SEGMENT} s SET size = f.size FROM figures f WHERE s.id = f.segment_id AND s.size <> f.size),
    days AS (
        INSERT INTO {_DAY} (segment_id, day, joins, leaves, size)
        SELECT f.segment_id, %s, f.added, f.removed, f.size FROM figures f WHERE f.added + f.removed > 0
        {_ADD_TO_DAY})
    SELECT segment_id, added, removed, size FROM figures"""


def _write_postgresql(
    targets: Sequence[Target],
    ids: list[int] | QuerySet[Contact] | None,
    *,
    changed_at: datetime,
    actor_id: int | None,
    repeated: bool,
) -> dict[int, Written]:
    segments = [target.segment for target in targets]
    params: list = [
        [s.pk for s in segments],
        [s.parent_id for s in segments],
        [s.last_refresh_started_at for s in segments],
        [target.reason for target in targets],
    ]
    if ids is None:
        target_sql, target_params = _target_sql(targets[0])
        pk = segments[0].pk
        diff, figures = _PG_WHOLE.format(target=target_sql, membership=_MEMBERSHIP), _PG_WHOLE_FIGURES
        params += [*target_params, pk, pk]
    else:
        selects = []
        scope_sql, scope_params = _scope_sql(ids, array="SELECT unnest(%s::bigint[])")
        params += scope_params
        for target in targets:
            sql, target_params = _target_sql(target)
            selects.append(f"SELECT %s::bigint AS segment_id, t.contact_id FROM ({sql}) AS t(contact_id)")
            params += [target.segment.pk, *target_params]
        diff = _PG_SCOPED.format(
            scope=_SCOPE, scope_sql=scope_sql, targets=" UNION ALL ".join(selects), membership=_MEMBERSHIP
        )
        figures = _PG_SCOPED_FIGURES
    sql = f"""WITH written_segments(segment_id, parent_id, since, reason) AS (
            SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::text[])),
        {diff},
        {_PG_WRITES.format(figures=figures)}"""
    params += [*_history_params(changed_at, actor_id), changed_at]
    if ids is None:
        params.append(pk)  # the figures' segment
    params.append(timezone.localdate(changed_at))
    with _cursor(prepared=repeated) as cursor:
        if not repeated:  # (a prepared statement's generic plan is costed for a few contacts: never compiled)
            cursor.execute(_WITHOUT_JIT)
        cursor.execute(_numbered(sql) if repeated else sql, params)
        rows = {pk: Written(added, removed, size) for pk, added, removed, size in cursor.fetchall()}
    return {s.pk: rows.get(s.pk, Written(0, 0, None)) for s in segments}


# The writer's statement runs without JIT, for the rest of the transaction holding the segments'
# locks (a performance setting only). Its cost estimates reach millions on a large table while it
# runs in a fraction of a second, and PostgreSQL then compiles it: at 1M contacts 270-420 ms of the
# 630 ms refresh of bench-mql-or-demo (lifecycle stage or a demo request: an OR over a hashed
# subplan, estimated at 13M) went to compiling 111 functions.
_WITHOUT_JIT = "SET LOCAL jit = off"


def _scope_sql(ids: list[int] | QuerySet[Contact], *, array: str) -> tuple[str, list]:
    """The SQL and params selecting the scope's ids: the list as one parameter read by `array`, or
    the queryset's own statement."""
    if isinstance(ids, QuerySet):
        return _select_sql(ids)
    return array, [ids if connection.vendor == "postgresql" else json.dumps(ids)]


def use_generic_plans() -> None:
    """For the rest of the transaction, the statements of `write_members(..., repeated=True)` run
    PostgreSQL's generic plan from their second call on (planning one costs more than running it
    for a few contacts); nothing elsewhere."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")


@lru_cache(maxsize=64)
def _numbered(sql: str) -> str:
    """`sql` as PostgreSQL's protocol takes it, for the prepared cursor: its %s placeholders numbered
    $1, $2, ... and %% made %. Kept per statement text: psycopg converts a statement on every call
    when it is longer than 4 kB, as a refresh's level statement over tens of segments is (~1 ms of
    a one-contact refresh over 50 segments, 2.5 ms on a loaded machine)."""
    numbers = count(1)
    return re.sub(r"%([s%])", lambda m: f"${next(numbers)}" if m.group(1) == "s" else "%", sql)


@contextmanager
def _cursor(*, prepared: bool) -> Iterator[CursorWrapper]:
    """A cursor; `prepared`: one whose statements PostgreSQL plans once per connection and reuses,
    written with numbered placeholders (`_numbered`).

    The project's connections bind client-side and prepare nothing (Django's default, for
    transaction-mode poolers older than PgBouncer 1.21), so this cursor binds server-side and opts
    in while it runs. It is wrapped as Django wraps its own, so its statements are logged and counted.
    """
    if not prepared:
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    raw = connection.connection
    threshold, raw.prepare_threshold = raw.prepare_threshold, 0  # prepare on first use (None: never)
    server_side = psycopg.RawCursor(raw)
    try:
        logged = connection.queries_logged
        # make_cursor wraps a driver's cursor (the stubs say it takes Django's wrapper).
        yield _LoggedCursor(server_side, connection) if logged else connection.make_cursor(server_side)  # type: ignore[arg-type]
    finally:
        server_side.close()
        raw.prepare_threshold = threshold


class _LoggedCursor(CursorDebugWrapper):
    """Logs the statement as written: psycopg keeps no client-side text of a prepared statement."""

    def execute(self, sql, params=None):
        with self.debug_sql(sql, params):
            return CursorWrapper.execute(self, sql, params)


# Portable (SQLite): the history rows from the diff, in one INSERT whose WITH holds the diff (so
# that the driver reports the inserted row count); the membership writes then follow from the
# rows this call inserted (ids above the largest before it: the caller's lock, and SQLite's single
# write lock, keep other writers out).
_PORTABLE_HISTORY = f"""{_HISTORY_INSERT}
    WITH {{scope}}written_segments(segment_id, parent_id, since, reason) AS (SELECT %s, %s, %s, %s),
    target(id) AS ({{target}}),
    current_members(contact_id) AS (SELECT contact_id FROM {_MEMBERSHIP} WHERE segment_id = %s{{in_scope}}),
    diff AS (
        SELECT %s AS segment_id, COALESCE(t.id, c.contact_id) AS contact_id, (t.id IS NOT NULL) AS joined
        FROM target t FULL JOIN current_members c ON c.contact_id = t.id
        WHERE (t.id IS NULL OR c.contact_id IS NULL){{target_in_scope}})
    {_HISTORY_ROWS}"""
_PORTABLE_JOINS = f"""INSERT INTO {_MEMBERSHIP} (segment_id, contact_id, joined_at)
    SELECT segment_id, contact_id, changed_at FROM {_CHANGE} WHERE segment_id = %s AND id > %s AND kind = %s"""
_PORTABLE_LEAVES = f"""DELETE FROM {_MEMBERSHIP} WHERE segment_id = %s AND contact_id IN (
    SELECT contact_id FROM {_CHANGE} WHERE segment_id = %s AND id > %s AND kind = %s)"""
# "WHERE true" lets SQLite parse ON CONFLICT after INSERT ... SELECT.
_PORTABLE_DAY = f"""INSERT INTO {_DAY} (segment_id, day, joins, leaves, size)
    SELECT id, %s, %s, %s, size FROM {_SEGMENT} WHERE id = %s AND true {_ADD_TO_DAY}"""


def _write_portable(
    target: Target, ids: list[int] | QuerySet[Contact] | None, *, changed_at: datetime, actor_id: int | None
) -> Written:
    segment = target.segment
    ops = connection.ops
    stamp = ops.adapt_datetimefield_value(changed_at)
    target_sql, target_params = _target_sql(target)
    scope_sql, scope_params = ("", []) if ids is None else _scope_sql(ids, array="SELECT value FROM json_each(%s)")
    in_scope = "" if ids is None else f" AND contact_id IN (SELECT id FROM {_SCOPE})"
    history = _PORTABLE_HISTORY.format(
        scope="" if ids is None else f"{_SCOPE}(id) AS ({scope_sql}), ",
        target=target_sql,
        in_scope=in_scope,
        target_in_scope="" if ids is None else f" AND (t.id IS NULL OR t.id IN (SELECT id FROM {_SCOPE}))",
    )
    params = [
        *scope_params,
        segment.pk,
        segment.parent_id,
        ops.adapt_datetimefield_value(segment.last_refresh_started_at),
        target.reason,
        *target_params,
        segment.pk,
        segment.pk,
        *_history_params(stamp, actor_id),
    ]
    added = removed = 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {_CHANGE}")
        (before,) = cursor.fetchone()
        cursor.execute(history, params)
        if cursor.rowcount:
            cursor.execute(_PORTABLE_JOINS, [segment.pk, before, ChangeKind.JOIN])
            added = cursor.rowcount
            cursor.execute(_PORTABLE_LEAVES, [segment.pk, segment.pk, before, ChangeKind.LEAVE])
            removed = cursor.rowcount
        size = None
        if ids is None:
            cursor.execute(
                f"UPDATE {_SEGMENT} SET size = (SELECT COUNT(*) FROM {_MEMBERSHIP} WHERE segment_id = %s) "
                "WHERE id = %s RETURNING size",
                [segment.pk, segment.pk],
            )
            (size,) = cursor.fetchone()
        elif added or removed:
            cursor.execute(
                f"UPDATE {_SEGMENT} SET size = size + %s - %s WHERE id = %s RETURNING size",
                [added, removed, segment.pk],
            )
            (size,) = cursor.fetchone()
        if added or removed:
            day = ops.adapt_datefield_value(timezone.localdate(changed_at))
            cursor.execute(_PORTABLE_DAY, [day, added, removed, segment.pk])
    return Written(added, removed, size)
