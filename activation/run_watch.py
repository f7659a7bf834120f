"""Export runs that show: a running run says which worker runs it and renews a heartbeat; a run
whose worker died is failed with the reason, and failed runs are retried with back-off.

The checks are crmseg_site/liveness.py's. A run's claim (activation/exports.py) stamps the worker and
its database session on the row and counts an attempt; every transition below is conditional on
that attempt, so a run failed by its worker and by the watchdog at once is failed once, and two
watchdogs queue one retry. `watch_exports` runs in the watchdog task (segments/watchdog.py).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from activation.models import ExportRun, ExportRunMember, RunStatus
from crmseg_site.liveness import current_session, death, live_sessions, retry_delay, worker_name

logger = logging.getLogger(__name__)

RUN_TASK = "activation.tasks.run_export"


def claim_fields() -> dict[str, object]:
    """What a claim writes beside the status: this worker, its session, a first heartbeat."""
    return {"worker": worker_name(), "session": current_session(), "heartbeat_at": timezone.now(), "retry_at": None}


def beat(run_id: int, attempt: int, now: datetime) -> None:
    """Heartbeat of attempt `attempt` of the run (from the heartbeat thread; never waits for a row lock)."""
    with transaction.atomic():
        mine = ExportRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, attempts=attempt)
        if mine.select_for_update(skip_locked=True, no_key=True).values_list("pk", flat=True):
            mine.update(heartbeat_at=now)


def retry_at(attempts: int, *, now: datetime) -> datetime | None:
    """When a run that failed on its attempt number `attempts` is tried again (None: not again)."""
    delay = retry_delay(attempts)
    return now + delay if delay is not None else None


def fail_dead_runs(*, now: datetime, activation_id: int | None = None) -> list[int]:
    """Fail the running runs (of one activation, or all) whose worker died, with the reason."""
    running = ExportRun.objects.filter(status=RunStatus.RUNNING)
    if activation_id is not None:
        running = running.filter(activation_id=activation_id)
    runs = list(running)
    sessions = live_sessions()  # after the rows: a session missing now was gone when they were read
    failed = []
    for run in runs:
        beat_at = run.heartbeat_at
        reason = death(worker=run.worker, session=run.session, heartbeat_at=beat_at, now=now, sessions=sessions)
        if reason is not None and fail_dead(run, reason=reason, now=now):
            failed.append(run.pk)
    return failed


def watch_exports(now: datetime) -> dict:
    """Fail the running runs whose worker died, with the reason; queue each retry that is due, once."""
    return {"exports_failed": fail_dead_runs(now=now), "exports_retried": retry_due(now=now)}


def fail_dead(run: ExportRun, *, reason: str, now: datetime) -> bool:
    """Fail a run whose worker died (if still that attempt), drop what it staged and its partial files."""
    started = timezone.localtime(run.started_at)
    error = f"Attempt {run.attempts}, started {started:%Y-%m-%d %H:%M:%S}, did not finish: {reason}."
    with transaction.atomic():
        failed = ExportRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, attempts=run.attempts).update(
            status=RunStatus.FAILED, finished_at=now, error=error, retry_at=retry_at(run.attempts, now=now)
        )
        if failed:
            ExportRunMember.objects.filter(run=run).delete()
    if not failed:
        return False
    logger.warning("Export run %s: %s", run.pk, error)
    # The files it was writing: the adds' and the removes', with ".part" until complete.
    for removals in (False, True):
        (Path(settings.MEDIA_ROOT) / f"{run.export_path(removals=removals)}.part").unlink(missing_ok=True)
    return True


def retry_due(*, now: datetime) -> list[int]:
    """Queue every failed run whose retry is due; the conditional UPDATE makes it once each."""
    queued = []
    for pk in ExportRun.objects.filter(status=RunStatus.FAILED, retry_at__lte=now).values_list("pk", flat=True):
        if ExportRun.objects.filter(pk=pk, status=RunStatus.FAILED, retry_at__lte=now).update(retry_at=None) == 1:
            async_task(RUN_TASK, pk, task_name=f"export-run-{pk}-retry")
            queued.append(pk)
    return queued
