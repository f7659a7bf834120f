"""Refreshing segments: make stored membership match each rule, writing only what changed.

`refresh_segment` refreshes one segment in one transaction under its lock; `refresh_all` walks
every active rule segment in dependency order, one transaction each; `refresh_contacts`
re-evaluates every active rule segment for just some contacts (after they changed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime

from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone

from segments.diffing import DiffResult, apply_target
from segments.events import memberships_changed
from segments.graph import Graph, dependants, dependency_graph, topological_order
from segments.history import request_details, wants_details
from segments.liveness import heartbeat
from segments.locks import lock_segment, lock_segments, lock_statement
from segments.models import ChangeReason, RefreshStatus, Segment, SegmentStatus
from segments.rollup import ADD_TO_DAY, DAY, count_changes
from segments.rules.registry import Field, get_fields, names_field, reads_rows
from segments.rules.thresholds import measure_thresholds
from segments.rules.validation import referenced_slugs
from segments.scoped import apply_level, levels, use_generic_plans
from segments.statements import fields_fingerprint
from segments.targets import target_contacts, target_sql
from segments.watchdog import beat, mark_running, record_failure, unmark

logger = logging.getLogger(__name__)

# refresh_contacts handles ids in chunks of this size (each chunk one transaction).
CONTACT_CHUNK = 2000
# What refresh_contacts reads of each segment (loading whole rows costs more than its statements).
SCOPED_REFRESH_FIELDS = (
    "slug", "kind", "status", "parent_id", "rule", "percent_thresholds", "last_refresh_started_at", "rule_edited_at"
)  # fmt: skip
# What refresh_segment reads of its segment under the lock: the same and its size, as one raw
# query (compiling the ORM query cost more than running it, ~0.6 ms against ~0.2 ms).
_READ_FIELDS = ("id", *SCOPED_REFRESH_FIELDS, "size")
_READ_SEGMENT = "SELECT {} FROM {} WHERE id = %s".format(
    ", ".join(Segment._meta.get_field(name).column for name in _READ_FIELDS), Segment._meta.db_table
)


@dataclass(frozen=True)
class RefreshResult:
    segment_id: int
    slug: str
    status: str  # "ok", "failed" or "skipped"
    size: int = 0
    added: int = 0
    removed: int = 0
    duration_ms: int = 0
    now: datetime | None = None
    error: str = ""

    def as_dict(self) -> dict:
        return {**asdict(self), "now": self.now.isoformat() if self.now else None}


def refresh_segment(segment_id: int, *, now: datetime | None = None, skip_if_locked: bool = False) -> RefreshResult:
    """Refresh one segment in one transaction; a failure leaves membership as it was and is recorded.

    While it runs, the segment shows it (running since, worker, heartbeat: segments/watchdog.py);
    a failure is retried with back-off. With `skip_if_locked`, a refresh that finds another one
    running returns status "skipped" instead of waiting for it (PostgreSQL; SQLite always waits).
    """
    now = now or timezone.now()
    clock = time.monotonic()
    since = mark_running(segment_id)
    slug = ""
    try:
        with _beating(segment_id, since), transaction.atomic():
            locked, segment = _lock_and_read(segment_id, wait=not skip_if_locked)
            if not locked:
                result = RefreshResult(segment_id, slug, "skipped", error="another refresh of this segment is running")
            elif segment is None:
                result = RefreshResult(segment_id, slug, "skipped", error="the segment no longer exists")
            elif segment.status != SegmentStatus.ACTIVE or not segment.is_rule_based:
                slug = segment.slug
                reason = f"{segment.get_kind_display().lower()} segment, {segment.get_status_display().lower()}"
                error = f"not refreshed: {reason}"
                result = RefreshResult(segment_id, slug, "skipped", size=segment.size, error=error)
            else:
                slug = segment.slug
                return _refresh_locked(segment, now=now, clock=clock, since=since)
    except Exception as error:
        logger.exception("Refresh of segment %s failed", segment_id)
        duration_ms = _elapsed_ms(clock)
        record_failure(
            segment_id,
            since=since,
            error=f"{type(error).__name__}: {error}",
            last_refreshed_at=timezone.now(),
            last_refresh_duration_ms=duration_ms,
            last_refresh_now=now,
        )
        return RefreshResult(segment_id, slug, "failed", duration_ms=duration_ms, now=now, error=str(error))
    if since is not None:
        unmark(segment_id, since)
    return result


@contextmanager
def _beating(segment_id: int, since: datetime | None) -> Iterator[None]:
    """The refresh's heartbeat while it runs (only a refresh that marked the segment has one)."""
    if since is None:
        yield
        return
    with heartbeat(lambda at: beat(segment_id, since, at)):
        yield


def _lock_and_read(segment_id: int, *, wait: bool) -> tuple[bool, Segment | None]:
    """Take the segment's lock, then read the segment as whoever held the lock before left it.

    On PostgreSQL the two statements go in one round trip (a refresh of a small segment paid
    ~0.5 ms for the second); the read is still a statement of its own, so it takes its snapshot
    after the lock was granted. Reading in the lock's own statement would not: its snapshot is
    taken before it waits.
    """
    if connection.vendor != "postgresql":
        if not lock_segment(segment_id, wait=wait):
            return False, None
        return True, next(iter(Segment.objects.raw(_READ_SEGMENT, [segment_id])), None)
    lock_sql, lock_params = lock_statement(segment_id, wait=wait)
    with connection.cursor() as cursor:
        cursor.execute(f"{lock_sql}; {_READ_SEGMENT}", [*lock_params, segment_id])
        if cursor.fetchone()[0] is False:
            return False, None
        cursor.nextset()
        row = cursor.fetchone()
    if row is None:
        return True, None
    loaded = {
        field.attname: _from_db(field, value)
        for field, value in zip((Segment._meta.get_field(name) for name in _READ_FIELDS), row, strict=True)
    }
    ordered = [field.attname for field in Segment._meta.concrete_fields if field.attname in loaded]  # from_db's order
    return True, Segment.from_db(connection.alias, ordered, [loaded[name] for name in ordered])


def _from_db(field: models.Field, value: object) -> object:
    """A value as the ORM would load it (JSON arrives as text and is decoded by its field)."""
    return field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value


def _refresh_locked(segment: Segment, *, now: datetime, clock: float, since: datetime | None) -> RefreshResult:
    started_at = timezone.now()
    if segment.last_refresh_started_at is None:
        reason = ChangeReason.INITIAL_BUILD
    elif segment.rule_edited_at is not None:
        reason = ChangeReason.RULE_EDITED
    else:
        reason = None
    fields = get_fields(properties=reads_rows(segment.rule))  # no query for a rule without props.* or scores
    thresholds = measure_thresholds(segment.rule, fields=fields)
    target = target_sql(segment, now=now, fields=fields, thresholds=thresholds)  # compiled once per process
    diff = apply_target(segment, target, changed_at=started_at, reason=reason)
    if diff.added or diff.removed:
        memberships_changed([segment.pk])  # listeners (automations) run after this commits
    if wants_details(diff.added + diff.removed):  # a task describes them after commit (history.py)
        request_details([segment.pk], changed_at=started_at, now=now)
    duration_ms = _elapsed_ms(clock)
    _record_refresh(
        segment, diff, now=now, started_at=started_at, thresholds=thresholds, duration_ms=duration_ms, since=since
    )
    return RefreshResult(
        segment.pk,
        segment.slug,
        "ok",
        size=diff.size,
        added=diff.added,
        removed=diff.removed,
        duration_ms=duration_ms,
        now=now,
    )


# A full refresh's figures on its segment, as SQL written once (compiling the ORM update cost
# ~0.4 ms of Python, more than running it). `rule_edited_at` is cleared only if it still holds the
# value this refresh read under its lock: edits do not take the lock. The running mark is cleared
# only if it is this refresh's own (segments/watchdog.py); a success ends any retrying.
_RECORD = f"""UPDATE {Segment._meta.db_table} SET size = %s, last_refresh_added = %s, last_refresh_removed = %s,
    last_refresh_duration_ms = %s, last_refresh_now = %s, last_refresh_started_at = %s, last_refreshed_at = %s,
    last_refresh_status = %s, last_refresh_error = '', percent_thresholds = %s,
    rule_edited_at = CASE WHEN rule_edited_at = %s THEN NULL ELSE rule_edited_at END,
    refresh_running_since = CASE WHEN refresh_running_since = %s THEN NULL ELSE refresh_running_since END,
    refresh_failures = 0, refresh_retry_at = NULL
    WHERE id = %s"""


def _record_refresh(
    segment: Segment,
    diff: DiffResult,
    *,
    now: datetime,
    started_at: datetime,
    thresholds: dict,
    duration_ms: int,
    since: datetime | None,
) -> None:
    """Record the refresh on its segment and, if it changed anything, in the day's rollup: one
    statement on PostgreSQL (the rollup takes the size the update returns), else two."""
    ops = connection.ops
    params = [
        diff.size,
        diff.added,
        diff.removed,
        duration_ms,
        ops.adapt_datetimefield_value(now),
        ops.adapt_datetimefield_value(started_at),
        ops.adapt_datetimefield_value(timezone.now()),
        RefreshStatus.OK,
        Segment._meta.get_field("percent_thresholds").get_db_prep_save(thresholds, connection),
        ops.adapt_datetimefield_value(segment.rule_edited_at),
        ops.adapt_datetimefield_value(since),
        segment.pk,
    ]
    with connection.cursor() as cursor:
        if (diff.added or diff.removed) and connection.vendor == "postgresql":
            cursor.execute(
                f"""WITH recorded AS ({_RECORD} RETURNING id, size)
                INSERT INTO {DAY} (segment_id, day, joins, leaves, size)
                SELECT id, %s, %s, %s, size FROM recorded {ADD_TO_DAY}""",
                [*params, ops.adapt_datefield_value(timezone.localdate(started_at)), diff.added, diff.removed],
            )
            return
        cursor.execute(_RECORD, params)
    count_changes(segment.pk, changed_at=started_at, joins=diff.added, leaves=diff.removed)  # none: no query


def _elapsed_ms(clock: float) -> int:
    return round((time.monotonic() - clock) * 1000)


def refresh_order(segment_ids: Iterable[int] | None = None) -> list[int]:
    """Active rule segments (all, or those given) with parents and references first."""
    candidates = Segment.objects.active().rule_based()
    if segment_ids is not None:
        candidates = candidates.filter(pk__in=list(segment_ids))
    return topological_order(dependency_graph(), candidates.values_list("pk", flat=True))


def refresh_all(*, now: datetime | None = None) -> list[RefreshResult]:
    """Refresh every active rule segment in dependency order, each in its own transaction."""
    now = now or timezone.now()
    return [refresh_segment(segment_id, now=now) for segment_id in refresh_order()]


def metric_reader_ids() -> list[int]:
    """Active rule segments whose rules read `metrics.*` (a loop over segments, not contacts)."""
    rules = Segment.objects.active().rule_based().values_list("pk", "rule")
    return [pk for pk, rule in rules if names_field(rule, "metrics.")]


def refresh_metric_segments(*, now: datetime | None = None) -> list[RefreshResult]:
    """After a full metrics run: refresh the active segments whose rules read `metrics.*`, and
    every segment depending on them, in dependency order (a loop over segments, not contacts)."""
    now = now or timezone.now()
    graph = dependency_graph()
    readers = metric_reader_ids()
    affected = set(readers).union(*(dependants(graph, pk) for pk in readers))
    return [refresh_segment(segment_id, now=now) for segment_id in refresh_order(affected)]


def refresh_with_dependants(
    segment_id: int, *, now: datetime | None = None, skip_if_locked: bool = False
) -> list[RefreshResult]:
    """Refresh a segment and then every active segment that depends on it, in dependency order."""
    now = now or timezone.now()
    downstream = set(dependants(dependency_graph(), segment_id))
    results = [refresh_segment(segment_id, now=now, skip_if_locked=skip_if_locked)]
    for dependant_id in refresh_order(downstream):
        results.append(refresh_segment(dependant_id, now=now, skip_if_locked=skip_if_locked))
    return results


def refresh_contacts(contact_ids: Iterable[int], *, now: datetime | None = None) -> list[RefreshResult]:
    """Re-evaluate every built, active rule segment for just these contacts, in dependency order.

    Set-based: the statements do not depend on how many contacts are given (up to CONTACT_CHUNK
    per transaction). On PostgreSQL one statement per level of the dependency graph refreshes
    every segment of that level (segments/scoped.py); elsewhere one diff per segment. Percent
    conditions use the thresholds the segment's last full refresh stored (rules/thresholds.py).
    Changes get the explainer's detail from a task after commit (segments/history.py). Should a
    segment fail, the chunk is redone with a savepoint per segment, so the failure is recorded on
    that segment and the others still apply. Returns the segments whose membership changed or that failed.
    """
    now = now or timezone.now()
    ids = sorted({int(pk) for pk in contact_ids})
    if not ids:
        return []
    built = Segment.objects.active().rule_based().filter(last_refresh_started_at__isnull=False)
    segments = built.only(*SCOPED_REFRESH_FIELDS).in_bulk()
    graph = _graph_of(segments)
    order = topological_order(graph, segments)
    fields = get_fields()
    results: dict[int, RefreshResult] = {}
    for start in range(0, len(ids), CONTACT_CHUNK):
        chunk = ids[start : start + CONTACT_CHUNK]
        try:
            with transaction.atomic():
                lock_segments(order)
                changed = _refresh_chunk([segments[pk] for pk in order], chunk, graph=graph, now=now, fields=fields)
        except Exception:
            logger.exception("Refresh of %d contacts failed; retrying segment by segment", len(chunk))
            changed = _refresh_some_isolated([segments[pk] for pk in order], chunk, now=now, fields=fields)
        for result in changed:
            if result.status == "failed" or result.added or result.removed:
                results[result.segment_id] = _merge(results.get(result.segment_id), result)
    return [results[pk] for pk in order if pk in results]


def _graph_of(segments: dict[int, Segment]) -> Graph:
    """The dependencies among these segments, read from their parents and rules (no query).

    Segments outside the set (static, paused, never built) are read as stored, so they need no
    place in the order.
    """
    by_slug = {segment.slug: pk for pk, segment in segments.items()}
    graph: Graph = {}
    for pk, segment in segments.items():
        reads = {by_slug[slug] for slug in referenced_slugs(segment.rule) if slug in by_slug}
        graph[pk] = reads | ({segment.parent_id} & segments.keys() if segment.parent_id else set())
    return graph


def _refresh_chunk(
    segments: list[Segment], contact_ids: list[int], *, graph: Graph, now: datetime, fields: dict[str, Field]
) -> list[RefreshResult]:
    changed_at = timezone.now()
    if connection.vendor == "postgresql":
        results = _refresh_levels(segments, contact_ids, graph=graph, now=now, fields=fields, changed_at=changed_at)
    else:
        results = [_refresh_some(s, contact_ids, now=now, fields=fields, changed_at=changed_at) for s in segments]
    _after_changes(results, changed_at=changed_at, now=now)
    return results


def _after_changes(results: list[RefreshResult], *, changed_at: datetime, now: datetime) -> None:
    """Announce the segments that changed; their new history rows get the explainer's detail from
    a task once this commits (history.py)."""
    touched = {r.segment_id for r in results if r.added or r.removed}
    if touched:
        memberships_changed(touched)  # listeners (automations) run after this commits
        request_details(touched, changed_at=changed_at, now=now)


def _refresh_levels(
    segments: list[Segment],
    contact_ids: list[int],
    *,
    graph: Graph,
    now: datetime,
    fields: dict[str, Field],
    changed_at: datetime,
) -> list[RefreshResult]:
    """PostgreSQL: one statement per level of the dependency graph (segments/scoped.py)."""
    by_pk = {segment.pk: segment for segment in segments}
    fields_key = fields_fingerprint(fields)
    use_generic_plans()
    results = []
    for level in levels(list(by_pk), graph):
        clock = time.monotonic()
        batch = [by_pk[pk] for pk in level]
        counts = apply_level(batch, contact_ids, now=now, fields=fields, fields_key=fields_key, changed_at=changed_at)
        duration_ms = _elapsed_ms(clock)
        results += [
            RefreshResult(pk, by_pk[pk].slug, "ok", added=added, removed=removed, duration_ms=duration_ms, now=now)
            for pk, (added, removed) in counts.items()
        ]
    return results


def _refresh_some_isolated(
    segments: list[Segment], contact_ids: list[int], *, now: datetime, fields: dict[str, Field]
) -> list[RefreshResult]:
    results: list[RefreshResult] = []
    failures: dict[int, Exception] = {}
    changed_at = timezone.now()
    with transaction.atomic():
        lock_segments([segment.pk for segment in segments])
        for segment in segments:
            try:
                with transaction.atomic():
                    results.append(_refresh_some(segment, contact_ids, now=now, fields=fields, changed_at=changed_at))
            except Exception as error:
                logger.exception("Refresh of segment %s for %d contacts failed", segment.pk, len(contact_ids))
                failures[segment.pk] = error
                results.append(RefreshResult(segment.pk, segment.slug, "failed", error=str(error)))
        _after_changes(results, changed_at=changed_at, now=now)
    for segment_id, error in failures.items():
        record_failure(segment_id, since=None, error=f"{type(error).__name__}: {error}")
    return results


def _refresh_some(
    segment: Segment,
    contact_ids: list[int],
    *,
    now: datetime,
    fields: dict[str, Field],
    changed_at: datetime,
) -> RefreshResult:
    """The portable path: one diff for one segment, scoped to the contacts."""
    clock = time.monotonic()
    reason = ChangeReason.RULE_EDITED if segment.rule_edited_at is not None else None
    target = target_contacts(
        segment, now=now, fields=fields, contact_ids=contact_ids, thresholds=segment.percent_thresholds
    )
    diff = apply_target(segment, target, changed_at=changed_at, reason=reason, scope=contact_ids)
    if diff.added or diff.removed:
        Segment.objects.filter(pk=segment.pk).update(size=F("size") + diff.added - diff.removed)
        count_changes(segment.pk, changed_at=changed_at, joins=diff.added, leaves=diff.removed)
    return RefreshResult(
        segment.pk,
        segment.slug,
        "ok",
        added=diff.added,
        removed=diff.removed,
        duration_ms=_elapsed_ms(clock),
        now=now,
    )


def _merge(previous: RefreshResult | None, result: RefreshResult) -> RefreshResult:
    if previous is None or result.status == "failed":
        return result
    return RefreshResult(
        result.segment_id,
        result.slug,
        "ok",
        added=previous.added + result.added,
        removed=previous.removed + result.removed,
        duration_ms=previous.duration_ms + result.duration_ms,
        now=result.now,
    )
