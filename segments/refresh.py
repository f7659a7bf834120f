"""Refreshing segments: which ones, in what order, under which locks, and what a failure spoils.

`refresh_segment` refreshes one segment in one transaction under its lock; `refresh_all` walks
every active rule segment in dependency order, one transaction each; `refresh_contacts`
re-evaluates every active rule segment for just some contacts (after they changed). Who should be
a member comes from segments/targets.py; the membership and its bookkeeping are written by
segments/membership.py. This module is the orchestration only.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cache

from django.db import connection, transaction
from django.utils import timezone

from crmseg_site.liveness import heartbeat
from segments.graph import dependants, dependency_graph, levels, topological_order
from segments.history import request_details, wants_details
from segments.locks import lock_segment, lock_segments
from segments.membership import Target, Written, use_generic_plans, write_members
from segments.models import ChangeReason, RefreshStatus, RuleVersion, Segment, SegmentStatus
from segments.rules.registry import Field, fields_stamp_sql, get_fields, names_field, reads_rows
from segments.rules.thresholds import measure_thresholds
from segments.targets import scoped_target_key, scoped_target_sql, target_sql
from segments.watchdog import beat, mark_running, record_failure, unmark

logger = logging.getLogger(__name__)

# refresh_contacts handles ids in chunks of this size (each chunk one transaction).
CONTACT_CHUNK = 2000
# A chunk of at most this many contacts runs its level statements prepared, with the one generic plan
# PostgreSQL keeps per connection (planning a level over 50 segments costs more than running it for
# a contact); a larger chunk is planned for its own size. At 100k contacts, 50 segments, each call
# committed, median of 5-15 (the generic plan against a plan per call): 1 contact 4.2 vs 12.3 ms,
# 30 contacts 14.9 vs 15.3 ms, 300 contacts 72 vs 65 ms, 1,000 contacts 344 vs 147 ms, 2,000
# contacts 996 vs 284 ms (the generic plan probes the contacts' rows once per segment).
GENERIC_PLAN_CONTACTS = 50
# What a refresh reads of each segment (loading whole rows costs more than its statements).
REFRESH_FIELDS = (
    "slug", "kind", "status", "parent_id", "rule", "percent_thresholds", "last_refresh_started_at", "rule_edited_at"
)  # fmt: skip


class Outcome(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class SkipReason(enum.StrEnum):
    """Why a refresh did not run; `RefreshResult.error` says it in words."""

    LOCKED = "locked"  # another refresh of the segment holds its lock (and the caller would not wait)
    GONE = "gone"  # the segment no longer exists
    NOT_REFRESHED = "not_refreshed"  # a static list, or a paused or archived segment


@dataclass(frozen=True)
class RefreshResult:
    segment_id: int
    slug: str
    status: Outcome
    size: int | None = 0
    added: int = 0
    removed: int = 0
    duration_ms: int = 0
    now: datetime | None = None
    error: str = ""
    skip_reason: SkipReason | None = None

    def as_dict(self) -> dict:
        return {**asdict(self), "now": self.now.isoformat() if self.now else None}


def refresh_segment(segment_id: int, *, now: datetime | None = None, skip_if_locked: bool = False) -> RefreshResult:
    """Refresh one segment in one transaction; a failure leaves membership as it was and is recorded.

    While it runs, the segment shows it (running since, worker, heartbeat: segments/watchdog.py);
    a failure is retried with back-off. With `skip_if_locked`, a refresh that finds another one
    running is skipped (SkipReason.LOCKED) instead of waiting for it (PostgreSQL; SQLite always waits).
    """
    now = now or timezone.now()
    clock = time.monotonic()
    since = mark_running(segment_id)
    slug = ""
    try:
        with _beating(segment_id, since), transaction.atomic():
            if not lock_segment(segment_id, wait=not skip_if_locked):
                result = _skipped(segment_id, slug, SkipReason.LOCKED, "another refresh of this segment is running")
            # Read after the lock was granted: as whoever held the lock before left the segment.
            elif (segment := Segment.objects.only("size", *REFRESH_FIELDS).filter(pk=segment_id).first()) is None:
                result = _skipped(segment_id, slug, SkipReason.GONE, "the segment no longer exists")
            elif segment.status != SegmentStatus.ACTIVE or not segment.is_rule_based:
                slug = segment.slug
                reason = f"{segment.get_kind_display().lower()} segment, {segment.get_status_display().lower()}"
                result = _skipped(segment_id, slug, SkipReason.NOT_REFRESHED, f"not refreshed: {reason}", segment.size)
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
        return RefreshResult(segment_id, slug, Outcome.FAILED, duration_ms=duration_ms, now=now, error=str(error))
    if since is not None:
        unmark(segment_id, since)
    return result


def _skipped(segment_id: int, slug: str, why: SkipReason, error: str, size: int = 0) -> RefreshResult:
    return RefreshResult(segment_id, slug, Outcome.SKIPPED, size=size, error=error, skip_reason=why)


@contextmanager
def _beating(segment_id: int, since: datetime | None) -> Iterator[None]:
    """The refresh's heartbeat while it runs (only a refresh that marked the segment has one)."""
    if since is None:
        yield
        return
    with heartbeat(lambda at: beat(segment_id, since, at)):
        yield


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
    written = write_members([Target(segment, target, reason)], changed_at=started_at)[segment.pk]
    if reason is not None:  # the first build under a new rule: its versions learn the size after
        RuleVersion.objects.filter(segment=segment.pk, size_after=None, changed_at__lte=started_at).update(
            size_after=written.size
        )
    if wants_details(written.added + written.removed):  # a task describes them after commit (history.py)
        request_details([segment.pk], changed_at=started_at, now=now)
    duration_ms = _elapsed_ms(clock)
    _record_refresh(
        segment, written, now=now, started_at=started_at, thresholds=thresholds, duration_ms=duration_ms, since=since
    )
    return RefreshResult(
        segment.pk,
        segment.slug,
        Outcome.OK,
        size=written.size,
        added=written.added,
        removed=written.removed,
        duration_ms=duration_ms,
        now=now,
    )


# The figures of a refresh, on its segment. `rule_edited_at` is cleared only if it still holds the
# value the refresh read under its lock (edits do not take the lock); the running mark only if it is
# the refresh's own (segments/watchdog.py); a success ends any retrying. One statement written once:
# compiled by the ORM each time (its two conditional columns) it cost ~1 ms of every refresh.
_RECORD = f"""UPDATE {Segment._meta.db_table} SET last_refresh_added = %s, last_refresh_removed = %s,
    last_refresh_duration_ms = %s, last_refresh_now = %s, last_refresh_started_at = %s, last_refreshed_at = %s,
    last_refresh_status = %s, last_refresh_error = '', percent_thresholds = %s,
    rule_edited_at = CASE WHEN rule_edited_at IS NOT DISTINCT FROM %s THEN NULL ELSE rule_edited_at END,
    refresh_running_since = CASE WHEN refresh_running_since IS NOT DISTINCT FROM %s THEN NULL
        ELSE refresh_running_since END,
    refresh_failures = 0, refresh_retry_at = NULL
    WHERE id = %s"""


def _record_refresh(
    segment: Segment,
    written: Written,
    *,
    now: datetime,
    started_at: datetime,
    thresholds: dict,
    duration_ms: int,
    since: datetime | None,
) -> None:
    """Record the refresh's figures on its segment (membership.py wrote the size and the rollup)."""
    at = connection.ops.adapt_datetimefield_value
    stored_thresholds = Segment._meta.get_field("percent_thresholds").get_db_prep_save(thresholds, connection)
    params = [
        written.added,
        written.removed,
        duration_ms,
        at(now),
        at(started_at),
        at(timezone.now()),
        RefreshStatus.OK,
        stored_thresholds,
        at(segment.rule_edited_at),
        at(since),
        segment.pk,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_RECORD, params)


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
    per transaction). The segments of one level of the dependency graph are written together
    (PostgreSQL: one statement per level, segments/membership.py). Percent conditions use the
    thresholds the segment's last full refresh stored (rules/thresholds.py). Changes get the
    explainer's detail from a task after commit (segments/history.py). Should a segment fail, the
    chunk is redone with a savepoint per segment, so the failure is recorded on that segment and
    the others still apply. Returns the segments whose membership changed or that failed.
    """
    now = now or timezone.now()
    ids = sorted({int(pk) for pk in contact_ids})
    if not ids:
        return []
    catalog = _built_catalog()
    results: dict[int, RefreshResult] = {}
    for start in range(0, len(ids), CONTACT_CHUNK):
        chunk = ids[start : start + CONTACT_CHUNK]
        try:
            with transaction.atomic():
                lock_segments(list(catalog.segments))
                changed = _refresh_levels(catalog, chunk, now=now)
        except Exception:
            logger.exception("Refresh of %d contacts failed; retrying segment by segment", len(chunk))
            changed = _refresh_isolated(catalog, chunk, now=now)
        for result in changed:
            if result.status == Outcome.FAILED or result.added or result.removed:
                results[result.segment_id] = _merge(results.get(result.segment_id), result)
    return [results[pk] for pk in catalog.segments if pk in results]


@dataclass(frozen=True)
class _Catalog:
    """What refresh_contacts reads before it writes: the built, active rule segments (REFRESH_FIELDS)
    by id in dependency order, the levels of their graph, and the field registry. Kept by the
    process while `stamp`, read from the database on every call, is unchanged (PostgreSQL; SQLite
    reads them every time), with each segment's compiled-target key once it is made."""

    stamp: str | None
    segments: dict[int, Segment]
    levels: list[list[int]]
    fields: dict[str, Field]
    keys: dict[int, tuple] = field(default_factory=dict)

    def target(self, segment: Segment, *, now: datetime) -> Target:
        """Who should be a member of `segment` among the contacts of the write (as of `now`)."""
        if (key := self.keys.get(segment.pk)) is None:
            key = self.keys[segment.pk] = scoped_target_key(segment, fields=self.fields)
        reason = ChangeReason.RULE_EDITED if segment.rule_edited_at is not None else None
        return Target(segment, scoped_target_sql(segment, now=now, fields=self.fields, key=key), reason)


_kept_catalog: _Catalog | None = None


def _built_catalog() -> _Catalog:
    """The catalog as stored now: from the process's copy when its stamp still holds.

    One statement checks the stamp; reading and building the catalog again (the segments' rows
    and rules, two queries for the fields, the graph) cost ~3-5 ms of a one-contact refresh over
    50 segments at 1M contacts. The stamp is read first, so a change committed while the catalog
    is built makes the next call build it again."""
    global _kept_catalog
    stamp = _catalog_stamp()
    kept = _kept_catalog
    if stamp is not None and kept is not None and kept.stamp == stamp:
        return kept
    built = Segment.objects.active().rule_based().filter(last_refresh_started_at__isnull=False)
    segments = built.only(*REFRESH_FIELDS).in_bulk()
    graph = dependency_graph(segments.values())
    ordered = {pk: segments[pk] for pk in topological_order(graph, segments)}
    _kept_catalog = _Catalog(stamp, ordered, levels(list(ordered), graph), get_fields())
    return _kept_catalog


def _catalog_stamp() -> str | None:
    """PostgreSQL: a hash of every segment's REFRESH_FIELDS (with its id) and of the rows the field
    registry reads; any change to them changes it. None elsewhere."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(_catalog_stamp_sql())
        segments, fields = cursor.fetchone()
    return f"{segments}/{fields}"


@cache
def _catalog_stamp_sql() -> str:
    read = {"id", *REFRESH_FIELDS}
    columns = ", ".join(str(f.column) for f in Segment._meta.concrete_fields if {f.name, f.attname} & read)
    return f"""SELECT md5(COALESCE(string_agg(ROW({columns})::text, ';' ORDER BY id), '')), ({fields_stamp_sql()})
        FROM {Segment._meta.db_table}"""


def _refresh_levels(catalog: _Catalog, contact_ids: list[int], *, now: datetime) -> list[RefreshResult]:
    """Each level of the dependency graph written at once; a level reads what the ones before wrote."""
    changed_at = timezone.now()
    repeated = len(contact_ids) <= GENERIC_PLAN_CONTACTS
    if repeated:
        use_generic_plans()
    results = []
    for level in catalog.levels:
        clock = time.monotonic()
        targets = [catalog.target(catalog.segments[pk], now=now) for pk in level]
        written = write_members(targets, contact_ids=contact_ids, changed_at=changed_at, repeated=repeated)
        duration_ms = _elapsed_ms(clock)
        results += [
            _scoped_result(catalog.segments[pk], w, now=now, duration_ms=duration_ms) for pk, w in written.items()
        ]
    _describe_later(results, changed_at=changed_at, now=now)
    return results


def _refresh_isolated(catalog: _Catalog, contact_ids: list[int], *, now: datetime) -> list[RefreshResult]:
    """Segment by segment, each in a savepoint: a failing one is recorded, the others still apply."""
    results: list[RefreshResult] = []
    failures: dict[int, Exception] = {}
    changed_at = timezone.now()
    with transaction.atomic():
        lock_segments(list(catalog.segments))
        for segment in catalog.segments.values():
            clock = time.monotonic()
            try:
                with transaction.atomic():
                    written = write_members(
                        [catalog.target(segment, now=now)], contact_ids=contact_ids, changed_at=changed_at
                    )
            except Exception as error:
                logger.exception("Refresh of segment %s for %d contacts failed", segment.pk, len(contact_ids))
                failures[segment.pk] = error
                results.append(RefreshResult(segment.pk, segment.slug, Outcome.FAILED, error=str(error)))
            else:
                duration_ms = _elapsed_ms(clock)
                results.append(_scoped_result(segment, written[segment.pk], now=now, duration_ms=duration_ms))
        _describe_later(results, changed_at=changed_at, now=now)
    for segment_id, failure in failures.items():
        record_failure(segment_id, since=None, error=f"{type(failure).__name__}: {failure}")
    return results


def _scoped_result(segment: Segment, written: Written, *, now: datetime, duration_ms: int) -> RefreshResult:
    return RefreshResult(
        segment.pk,
        segment.slug,
        Outcome.OK,
        size=written.size,
        added=written.added,
        removed=written.removed,
        duration_ms=duration_ms,
        now=now,
    )


def _describe_later(results: list[RefreshResult], *, changed_at: datetime, now: datetime) -> None:
    """The history rows these results wrote get the explainer's detail from a task once this
    commits (history.py)."""
    request_details({r.segment_id for r in results if r.added or r.removed}, changed_at=changed_at, now=now)


def _merge(previous: RefreshResult | None, result: RefreshResult) -> RefreshResult:
    if previous is None or result.status == Outcome.FAILED:
        return result
    return RefreshResult(
        result.segment_id,
        result.slug,
        Outcome.OK,
        size=result.size,
        added=previous.added + result.added,
        removed=previous.removed + result.removed,
        duration_ms=previous.duration_ms + result.duration_ms,
        now=result.now,
    )
