"""Every recurring background job (a django-q2 Schedule), in one table, kept in step by `migrate`.

`migrate` ends with post_migrate, and `ensure_schedules` answers it (crmseg_site/apps.py): each
job in `recurring()` is created when missing and brought back to its configured form (task,
interval, time of day) when it differs, so a deployment needs nothing beyond `migrate` and a
changed setting (SEGMENT_REFRESH_INTERVAL_MINUTES, say) takes effect at the next one. A job's
next run is kept unless its interval or time of day changed: a deploy neither postpones nor
repeats a nightly job. `manage.py ensure_schedules` does the same and prints the schedules.

To add a recurring job, add a line to `recurring()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

from activation.automations import SCHEDULE_NAME as AUTOMATIONS
from activation.file_scrub import SCHEDULE_NAME as FILE_SCRUB
from contacts.partitions import SCHEDULE_NAME as ACTIVITY_PARTITIONS
from contacts.retention import SCHEDULE_NAME as ACTIVITY_RETENTION
from contacts.tasks import CATCH_UP_SCHEDULE as CATCH_UP
from contacts.tasks import HYGIENE_SCHEDULE as HYGIENE_DAILY
from contacts.tasks import NIGHTLY_SCHEDULE as METRICS_NIGHTLY
from predictions.tasks import DAILY_SCHEDULE as PREDICTIONS_DAILY
from segments.analytics.updates import NIGHTLY_AT as ANALYTICS_AT
from segments.analytics.updates import SCHEDULE_NAME as ANALYTICS_NIGHTLY
from segments.governance.tasks import DAILY_SCHEDULE as GOVERNANCE_DAILY
from segments.governance.tasks import REMINDERS_SCHEDULE as GOVERNANCE_REMINDERS
from segments.tasks import REFRESH_ALL_SCHEDULE, WATCH_HALF_SCHEDULE, WATCH_SCHEDULE


@dataclass(frozen=True)
class Recurring:
    """A job run every `minutes`, or every day at `daily_at` (local time).

    `half_past` names another job of the same interval that this one runs half an interval after:
    together they run the task twice per interval. django-q's scheduler looks for due schedules every
    30 s, so a job every minute runs 60–90 s apart; two half a minute apart run at most ~30 s late.
    """

    name: str
    func: str
    minutes: int | None = None
    daily_at: time | None = None
    half_past: str | None = None

    def in_phase(self, schedule: Schedule, partner: Schedule) -> bool:
        """This job's stored next run is half an interval off its partner's (to the second)."""
        interval = timedelta(minutes=self.minutes or 0).total_seconds()
        offset = (schedule.next_run - partner.next_run).total_seconds() % interval
        return abs(offset - interval / 2) < 1

    def form(self) -> dict:
        """The Schedule fields this job sets (its next run aside)."""
        kind = Schedule.MINUTES if self.minutes else Schedule.DAILY
        return {"func": self.func, "schedule_type": kind, "minutes": self.minutes, "repeats": -1}

    def next_run(self, now: datetime) -> datetime:
        if self.daily_at is None:
            return now + timedelta(minutes=self.minutes or 0)
        local = timezone.localtime(now)
        at = timezone.make_aware(datetime.combine(local.date(), self.daily_at))
        return (
            at if at > now else timezone.make_aware(datetime.combine(local.date() + timedelta(days=1), self.daily_at))
        )

    def keeps(self, schedule: Schedule) -> bool:
        """The stored schedule's next run still fits this job (same kind, interval and time of day)."""
        same_form = all(getattr(schedule, key) == value for key, value in self.form().items())
        if self.daily_at is None or schedule.next_run is None:
            return same_form and schedule.next_run is not None
        return same_form and timezone.localtime(schedule.next_run).time() == self.daily_at


def recurring() -> list[Recurring]:
    """Every recurring job, as the settings configure it now."""
    return [
        Recurring(
            REFRESH_ALL_SCHEDULE, "segments.tasks.refresh_all_task", minutes=settings.SEGMENT_REFRESH_INTERVAL_MINUTES
        ),
        Recurring(WATCH_SCHEDULE, "segments.tasks.watch_runs_task", minutes=settings.RUN_WATCH_MINUTES),
        Recurring(
            WATCH_HALF_SCHEDULE,
            "segments.tasks.watch_runs_task",
            minutes=settings.RUN_WATCH_MINUTES,
            half_past=WATCH_SCHEDULE,
        ),
        Recurring(AUTOMATIONS, "activation.automations.process_automations", minutes=1),
        # Writes queue the catch-up themselves; this one takes over from a queued task that was lost
        # (two queries when nothing waits).
        Recurring(CATCH_UP, "contacts.tasks.catch_up_task", minutes=1),
        # Picks up an erasure's file scrub whose task failed (one query when none is pending).
        Recurring(FILE_SCRUB, "activation.file_scrub.scrub_export_files", minutes=15),
        Recurring(METRICS_NIGHTLY, "contacts.tasks.compute_all_metrics", daily_at=time(settings.METRICS_NIGHTLY_HOUR)),
        # PostgreSQL: the activity table's monthly partitions, made months ahead (nothing on SQLite).
        Recurring(ACTIVITY_PARTITIONS, "contacts.tasks.make_activity_partitions", daily_at=time(1, 15)),
        # ACTIVITY_RETENTION_MONTHS: months past it go once read, so after the metrics (02:00 by
        # default), the analytics (02:30) and the predictions (03:00) of the night. Off by default.
        Recurring(ACTIVITY_RETENTION, "contacts.tasks.drop_old_activity_months", daily_at=time(4, 15)),
        # Reachability, after the metrics of the night (inactive contacts: the sunset policy).
        Recurring(HYGIENE_DAILY, "contacts.tasks.check_hygiene", daily_at=time(settings.METRICS_NIGHTLY_HOUR, 30)),
        # Scores every active model's contacts and retrains the models that are due.
        Recurring(PREDICTIONS_DAILY, "predictions.tasks.daily_task", daily_at=time(settings.PREDICTIONS_DAILY_HOUR)),
        Recurring(ANALYTICS_NIGHTLY, "segments.tasks.update_analytics_task", daily_at=time(*ANALYTICS_AT)),
        Recurring(
            GOVERNANCE_DAILY,
            "segments.governance.tasks.daily_governance",
            daily_at=time(settings.GOVERNANCE_DAILY_HOUR),
        ),
        Recurring(
            GOVERNANCE_REMINDERS,
            "segments.governance.tasks.review_reminders",
            daily_at=time(settings.GOVERNANCE_DAILY_HOUR),
        ),
    ]


def ensure_schedules() -> list[Schedule]:
    """Create or correct every job of `recurring()`; running it again changes nothing."""
    now = timezone.now()
    schedules: dict[str, Schedule] = {}
    for job in recurring():
        partner = schedules.get(job.half_past or "")
        next_run = job.next_run(now)
        if partner is not None:
            next_run = partner.next_run + timedelta(minutes=(job.minutes or 0) / 2)
        schedule, created = Schedule.objects.get_or_create(name=job.name, defaults={**job.form(), "next_run": next_run})
        if not created and not (job.keeps(schedule) and (partner is None or job.in_phase(schedule, partner))):
            for key, value in job.form().items():
                setattr(schedule, key, value)
            schedule.next_run = next_run
            schedule.save(update_fields=[*job.form(), "next_run"])
        schedules[job.name] = schedule
    return list(schedules.values())


def ensure_schedules_after_migrate(**kwargs) -> None:
    """post_migrate receiver (sent for django_q, whose Schedule table exists by then)."""
    ensure_schedules()
