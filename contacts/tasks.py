"""Background work on contacts (django-q2): metrics recompute, nightly and after writes.

Tasks take ids, never objects, and are idempotent: recomputing a contact twice as of the same
time writes the same row.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from contacts.metrics.compute import compute_metrics

NIGHTLY_SCHEDULE = "contacts: compute metrics nightly"
NIGHTLY_FUNC = "contacts.tasks.compute_all_metrics"


def compute_all_metrics() -> str:
    """Recompute every contact's metrics as of now (the nightly run)."""
    return str(compute_metrics())


def compute_contact_metrics(contact_ids: list[int]) -> str:
    """Recompute the metrics of these contacts only, ranked against everyone's stored metrics."""
    return str(compute_metrics(contact_ids=contact_ids))


def enqueue_contact_metrics(contact_ids: list[int]) -> None:
    """contacts.changes listener: runs after commit, so the task sees the new activities."""
    if settings.METRICS_RECOMPUTE_ON_WRITE and contact_ids:
        async_task("contacts.tasks.compute_contact_metrics", list(contact_ids), group="contact-metrics")


def next_nightly_run(*, now: datetime | None = None) -> datetime:
    now = timezone.localtime(now or timezone.now())
    at = timezone.make_aware(datetime.combine(now.date(), time(settings.METRICS_NIGHTLY_HOUR)))
    return at if at > now else at + timedelta(days=1)


def ensure_nightly_schedule() -> Schedule:
    """Create the nightly Schedule, or bring an existing one back to the configured form."""
    schedule, created = Schedule.objects.get_or_create(
        name=NIGHTLY_SCHEDULE,
        defaults={"func": NIGHTLY_FUNC, "schedule_type": "D", "repeats": -1, "next_run": next_nightly_run()},
    )
    if not created and (schedule.func, schedule.schedule_type, schedule.repeats) != (NIGHTLY_FUNC, "D", -1):
        schedule.func, schedule.schedule_type, schedule.repeats = NIGHTLY_FUNC, "D", -1
        schedule.save(update_fields=["func", "schedule_type", "repeats"])
    return schedule
