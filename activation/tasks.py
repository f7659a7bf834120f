"""django-q2 tasks of the activation app. They take ids and are safe to run twice."""

from __future__ import annotations

import logging

from django.db import transaction
from django_q.tasks import async_task

from activation.exports import execute_run, start_run
from activation.models import Activation, ExportRun

logger = logging.getLogger(__name__)


def run_activation(activation_id: int) -> int | None:
    """Scheduled entry point: start a run of an enabled activation and execute it; returns the run id."""
    activation = Activation.objects.filter(pk=activation_id, enabled=True).first()
    if activation is None:
        logger.info("Activation %s is gone or disabled; nothing exported", activation_id)
        return None
    run = start_run(activation)
    return execute_run(run.pk).pk


def run_export(run_id: int) -> None:
    """Execute one queued (or failed, to retry it) export run."""
    execute_run(run_id)


def enqueue_export(run: ExportRun) -> None:
    """Queue the run's execution once the transaction that created it has committed."""
    transaction.on_commit(lambda: async_task("activation.tasks.run_export", run.pk, task_name=f"export-run-{run.pk}"))
