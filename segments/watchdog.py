"""Refreshes that show: a full refresh marks its segment running, a dead one is failed with the
reason, and a failed one is retried with back-off (the checks are in crmseg_site/liveness.py).

The mark is the refresh's start time in `refresh_running_since`, written and committed before the
refresh's own transaction (so others see it) and cleared by that transaction when it records its
result (segments/refresh.py). Every transition is a conditional UPDATE on the mark or on the retry
time, so a run failed at once by its own worker and by the watchdog is counted once, and two
watchdogs queue one retry.

`watch()` is the task run twice every RUN_WATCH_MINUTES (crmseg_site/schedules.py): it does the
segments' runs and then those of every registered watcher: the catch-up after writes
(contacts/catch_up.py, added by segments/apps.py: `contacts` knows nothing of segments) and
activation's export runs (added by activation: `segments` knows nothing of activation).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone
from django_q.tasks import async_task

from crmseg_site.liveness import SESSION_OF, current_session, death, live_sessions, retry_delay, worker_name
from segments.models import RefreshFailure, RefreshStatus, Segment

logger = logging.getLogger(__name__)

REFRESH_TASK = "segments.tasks.refresh_segment_task"
SEGMENT = Segment._meta.db_table

Watcher = Callable[[datetime], dict]
_watchers: list[Watcher] = []


def add_watcher(watcher: Watcher) -> None:
    if watcher not in _watchers:
        _watchers.append(watcher)


_MARK = f"""UPDATE {SEGMENT} SET refresh_running_since = %s, refresh_heartbeat_at = %s, refresh_worker = %s,
    refresh_session = %s WHERE id = %s"""
# PostgreSQL, a statement on its own: the mark is a hint, not data, so its commit need not wait for
# the disk (waiting doubled a small refresh's time on a busy server; the refresh's own commit
# flushes it anyway). set_config(..., true) lasts for this statement's transaction only.
_MARK_ON_ITS_OWN = _MARK.replace(
    "WHERE", "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed WHERE", 1
)
# PostgreSQL: a mark left by a refresh whose session is gone may be taken over.
_MARKED_BY_THE_DEAD = f""" AND NOT EXISTS (
    SELECT 1 FROM pg_stat_activity a WHERE {SESSION_OF.format(alias="a")} = {SEGMENT}.refresh_session)"""


def mark_running(segment_id: int) -> datetime | None:
    """Record that this worker starts a full refresh of the segment; returns the mark.

    None when another refresh marked it and is still alive (on PostgreSQL its session is open):
    this one then waits for that one's lock or skips, and leaves its mark alone. SQLite: no other
    refresh can be running while this statement writes (it holds the database's write lock).
    """
    since = timezone.now()
    when = connection.ops.adapt_datetimefield_value(since)
    params = [when, when, worker_name(), current_session(), segment_id]
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(_MARK, params)
            return since if cursor.rowcount == 1 else None
        # Inside a caller's transaction the mark shows when that commits, as durable as the rest.
        mark = _MARK_ON_ITS_OWN if transaction.get_autocommit() else _MARK
        cursor.execute(mark + " AND refresh_running_since IS NULL", params)
        if cursor.rowcount == 0:
            cursor.execute(mark + _MARKED_BY_THE_DEAD, params)
        return since if cursor.rowcount == 1 else None


def beat(segment_id: int, since: datetime, now: datetime) -> None:
    """Heartbeat of the refresh marked `since` (from the heartbeat thread; never waits for a row lock)."""
    with transaction.atomic():
        mine = Segment.objects.filter(pk=segment_id, refresh_running_since=since)
        if mine.select_for_update(skip_locked=True, no_key=True).values_list("pk", flat=True):
            mine.update(refresh_heartbeat_at=now)


def unmark(segment_id: int, since: datetime) -> None:
    """The marked refresh did not run after all (skipped): take the mark off."""
    Segment.objects.filter(pk=segment_id, refresh_running_since=since).update(refresh_running_since=None)


def record_failure(segment_id: int, *, since: datetime | None, error: str, **fields: object) -> bool:
    """Fail the segment's refresh with `error` and set its retry (back-off); True if this call did it.

    With `since`, only while the refresh's mark stands (the worker and the watchdog may both see it
    die). `fields` are more columns to set (when, how long).
    """
    with transaction.atomic():
        rows = Segment.objects.filter(pk=segment_id)
        if since is not None:
            rows = rows.filter(refresh_running_since=since)
        failures = rows.select_for_update(no_key=True).values_list("refresh_failures", flat=True).first()
        if failures is None:
            return False
        delay = retry_delay(failures + 1)
        rows.update(
            last_refresh_status=RefreshStatus.FAILED,
            last_refresh_error=error,
            refresh_running_since=None,
            refresh_failures=failures + 1,
            refresh_retry_at=timezone.now() + delay if delay is not None else None,
            **fields,
        )
        RefreshFailure.objects.create(segment_id=segment_id, error=error)  # the segment page marks it
    return True


def watch(now: datetime | None = None) -> dict:
    """The watchdog task's work: dead refreshes failed, due retries queued, then the other watchers."""
    now = now or timezone.now()
    outcome = watch_refreshes(now=now)
    for watcher in _watchers:
        outcome.update(watcher(now))
    return outcome


def watch_refreshes(*, now: datetime | None = None) -> dict:
    """Fail the full refreshes whose worker died, with the reason; queue each retry that is due, once."""
    now = now or timezone.now()
    running = Segment.objects.filter(refresh_running_since__isnull=False).values_list(
        "pk", "refresh_running_since", "refresh_worker", "refresh_session", "refresh_heartbeat_at"
    )
    runs = list(running)
    sessions = live_sessions()  # after the rows: a session missing now was gone when they were read
    failed = []
    for pk, since, worker, session, heartbeat_at in runs:
        reason = death(worker=worker, session=session, heartbeat_at=heartbeat_at, now=now, sessions=sessions)
        if reason is None:
            continue
        started = timezone.localtime(since)
        error = f"The refresh started {started:%Y-%m-%d %H:%M:%S} did not finish: {reason}."
        if record_failure(pk, since=since, error=error, last_refreshed_at=now):
            logger.warning("Segment %s: %s", pk, error)
            failed.append(pk)
    return {"refreshes_failed": failed, "refreshes_retried": retry_due(now=now)}


def retry_due(*, now: datetime) -> list[int]:
    """Queue a refresh of every segment whose retry is due; the conditional UPDATE makes it once each."""
    queued = []
    for pk in Segment.objects.filter(refresh_retry_at__lte=now).values_list("pk", flat=True):
        if Segment.objects.filter(pk=pk, refresh_retry_at__lte=now).update(refresh_retry_at=None) == 1:
            async_task(REFRESH_TASK, pk, group="segment-refresh", task_name=f"retry refresh of segment {pk}")
            queued.append(pk)
    return queued
