"""Background refreshes (django-q2). Tasks take ids, are idempotent and return plain dicts.

Enqueueing always happens after commit: a worker must see the data that asked for the refresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from segments import history, refresh, static, watchdog
from segments.analytics import updates

REFRESH_ALL_SCHEDULE = "segments: refresh all"
WATCH_SCHEDULE = "runs: fail dead runs and retry failed ones"
WATCH_HALF_SCHEDULE = "runs: fail dead runs and retry failed ones (half an interval later)"
RETRY_SKIPPED_AFTER = timedelta(minutes=1)


def refresh_segment_task(segment_id: int) -> list[dict]:
    """Refresh a segment, then the segments that depend on it.

    A worker never waits for a refresh of the same segment that holds its lock; it skips and
    queues itself again a minute later, so an edit made while a refresh was running still lands.
    """
    results = refresh.refresh_with_dependants(segment_id, skip_if_locked=True)
    if results[0].skip_reason == refresh.SkipReason.LOCKED:
        Schedule.objects.create(
            name=f"segments: retry refresh {segment_id} {timezone.now():%H%M%S%f}",
            func="segments.tasks.refresh_segment_task",
            args=repr(segment_id),
            schedule_type=Schedule.ONCE,
            repeats=-1,
            next_run=timezone.now() + RETRY_SKIPPED_AFTER,
        )
    return [result.as_dict() for result in results]


def refresh_all_task() -> list[dict]:
    return [result.as_dict() for result in refresh.refresh_all()]


def refresh_contacts_task(contact_ids: list[int]) -> list[dict]:
    return [result.as_dict() for result in refresh.refresh_contacts(contact_ids)]


def list_edit_task(edit_id: int) -> str:
    """A large selection added to or removed from a static list (segments/static.py)."""
    return static.run_list_edit(edit_id)


def watch_runs_task() -> dict:
    """Twice every RUN_WATCH_MINUTES: dead refreshes (and export runs) failed with the reason, retries queued."""
    return watchdog.watch()


def describe_changes_task(segment_ids: list[int], changed_at: datetime, now: datetime) -> int:
    """The explainer's detail on the history rows a refresh wrote at `changed_at` (history.py)."""
    return history.describe_changes(segment_ids, changed_at=changed_at, now=now)


def enqueue_refresh_segment(segment_id: int) -> None:
    transaction.on_commit(
        lambda: async_task("segments.tasks.refresh_segment_task", segment_id, group="segment-refresh")
    )


def enqueue_refresh_contacts(contact_ids: Iterable[int]) -> None:
    """contacts.changes listener: one task for all the contacts one write changed.

    `contacts_changed` calls listeners after commit with the ids deduplicated and sorted; the
    write paths call it once per transaction, so this is one task per commit.
    """
    if not settings.SEGMENT_REFRESH_ON_WRITE:
        return
    ids = sorted({int(pk) for pk in contact_ids})
    if ids:
        async_task("segments.tasks.refresh_contacts_task", ids, group="segment-refresh")


def update_analytics_task() -> dict:
    """The nightly analytics update (segments/analytics/updates.py): periods with new source rows."""
    return updates.update_analytics()


def refresh_metric_segments_task() -> list[dict]:
    return [result.as_dict() for result in refresh.refresh_metric_segments()]


def enqueue_after_metrics(contact_ids: list[int] | None) -> None:
    """contacts.changes metrics listener (after commit): a full metrics run refreshes the segments
    reading `metrics.*`; a run for some contacts re-evaluates just those contacts. Nothing is
    queued while no active segment reads metrics."""
    if not refresh.metric_reader_ids():
        return
    if contact_ids is None:
        async_task("segments.tasks.refresh_metric_segments_task", group="segment-refresh")
    else:
        enqueue_refresh_contacts(contact_ids)
