"""Background refreshes (django-q2). Tasks take ids, are idempotent and return plain dicts.

Enqueueing always happens after commit: a worker must see the data that asked for the refresh.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from contacts.models import Contact
from segments import history, refresh, static, watchdog
from segments.analytics import updates
from segments.models import Segment
from segments.refresh import RefreshResult

REFRESH_ALL_SCHEDULE = "segments: refresh all"
REFRESH_TASK = "segments.tasks.refresh_segment_task"
WATCH_SCHEDULE = "runs: fail dead runs and retry failed ones"
WATCH_HALF_SCHEDULE = "runs: fail dead runs and retry failed ones (half an interval later)"
RETRY_SKIPPED_AFTER = timedelta(minutes=1)


def refresh_segment_task(segment_id: int) -> list[dict]:
    """Refresh a segment, then the segments that depend on it.

    A worker never waits for a refresh of the same segment that holds its lock; it skips and
    queues itself again a minute later, so an edit made while a refresh was running still lands.
    """
    # Started: a request from now on queues another refresh, which will see what it asks for.
    Segment.objects.filter(pk=segment_id).update(refresh_queued_at=None, refresh_task_id="")
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
    """Queue a refresh of the segment once the current transaction commits (queue_refresh)."""
    transaction.on_commit(lambda: queue_refresh(segment_id))


def queue_refresh(segment_id: int) -> str:
    """Queue a refresh of the segment (and its dependants) unless one is queued and not started yet;
    returns the id of the task that will do it. A task queued longer ago than Q_RETRY counts as lost."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.Q_RETRY)
    segment = Segment.objects.filter(pk=segment_id)
    free = Q(refresh_queued_at=None) | Q(refresh_queued_at__lt=stale)
    if segment.filter(free).update(refresh_queued_at=now, refresh_task_id="") == 0:
        queued = segment.values_list("refresh_task_id", flat=True).first()
        if queued:
            return queued
    task_id = async_task(REFRESH_TASK, segment_id, group="segment-refresh")
    segment.filter(refresh_queued_at=now).update(refresh_task_id=task_id)
    return task_id


def refresh_changed(contact_ids: list[int]) -> list[RefreshResult]:
    """contacts.changes reader (in the catch-up task): every segment re-reads these contacts, at once.

    More than SEGMENT_SCOPED_MAX_PERCENT of the contacts (and more than one chunk) refresh every
    segment in full instead, which then costs less than re-reading them chunk by chunk.
    """
    if not settings.SEGMENT_REFRESH_ON_WRITE or not contact_ids:
        return []
    if len(contact_ids) > refresh.CONTACT_CHUNK:
        share = 100 * len(contact_ids) / max(Contact.objects.count(), 1)
        if share > settings.SEGMENT_SCOPED_MAX_PERCENT:
            return refresh.refresh_all()
    return refresh.refresh_contacts(contact_ids)


def update_analytics_task() -> dict:
    """The nightly analytics update (segments/analytics/updates.py): periods with new source rows."""
    return updates.update_analytics()


def refresh_metric_segments_task() -> list[dict]:
    return [result.as_dict() for result in refresh.refresh_metric_segments()]


def enqueue_after_metrics(contact_ids: None) -> None:
    """contacts.changes metrics listener (after commit): a metrics run for everyone refreshes the
    segments reading `metrics.*` (a run for some contacts is re-read by the catch-up, as a change of
    those contacts). Nothing is queued while no active segment reads metrics."""
    if refresh.metric_reader_ids():
        async_task("segments.tasks.refresh_metric_segments_task", group="segment-refresh")
