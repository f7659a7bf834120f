"""Recurring jobs: created and kept in their configured form by `migrate`, from one table."""

from datetime import UTC, datetime, time, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from crmseg_site.schedules import Recurring, ensure_schedules, recurring
from segments.tasks import REFRESH_ALL_SCHEDULE

pytestmark = pytest.mark.django_db


def stored() -> dict[str, tuple]:
    return {
        s.name: (s.func, s.schedule_type, s.minutes, s.repeats, s.next_run)
        for s in Schedule.objects.filter(name__in=[job.name for job in recurring()])
    }


def test_migrate_creates_every_recurring_job():
    Schedule.objects.all().delete()

    call_command("migrate", verbosity=0, stdout=StringIO())

    jobs = {job.name: job for job in recurring()}
    assert set(stored()) == set(jobs)
    assert {
        REFRESH_ALL_SCHEDULE,
        "runs: fail dead runs and retry failed ones",
        "activation: process automations",
        "contacts: compute metrics nightly",
        "segments: analytics nightly",
        "predictions: score daily, retrain when due",
        "contacts: drop activity months past retention",
    } <= set(jobs)
    for name, (func, kind, minutes, repeats, next_run) in stored().items():
        assert (func, kind, minutes, repeats) == tuple(jobs[name].form().values())
        assert next_run > timezone.now() - timedelta(seconds=5)


def test_ensuring_again_changes_nothing():
    before = stored()

    ensure_schedules()
    call_command("ensure_schedules", stdout=StringIO())

    assert stored() == before
    assert Schedule.objects.filter(func="segments.tasks.refresh_all_task").count() == 1


def test_a_changed_setting_or_a_drifted_job_is_corrected_at_the_next_migrate(settings):
    settings.SEGMENT_REFRESH_INTERVAL_MINUTES = 15
    settings.METRICS_NIGHTLY_HOUR = 4
    Schedule.objects.filter(name="segments: analytics nightly").update(func="old.path", schedule_type=Schedule.HOURLY)

    call_command("migrate", verbosity=0, stdout=StringIO())

    sweep = Schedule.objects.get(name=REFRESH_ALL_SCHEDULE)
    assert (sweep.schedule_type, sweep.minutes) == (Schedule.MINUTES, 15)
    metrics = Schedule.objects.get(name="contacts: compute metrics nightly")
    assert timezone.localtime(metrics.next_run).time() == time(4)
    analytics = Schedule.objects.get(name="segments: analytics nightly")
    assert (analytics.func, analytics.schedule_type) == ("segments.tasks.update_analytics_task", Schedule.DAILY)


def test_a_nightly_job_keeps_its_next_run_across_deploys():
    nightly = Schedule.objects.get(name="contacts: compute metrics nightly")
    two_nights_on = nightly.next_run + timedelta(days=1)  # e.g. the worker already ran tonight's
    Schedule.objects.filter(pk=nightly.pk).update(next_run=two_nights_on)

    ensure_schedules()

    assert Schedule.objects.get(pk=nightly.pk).next_run == two_nights_on


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 6, 1, 1, 59, tzinfo=UTC), datetime(2026, 6, 1, 2, 0, tzinfo=UTC)),
        (datetime(2026, 6, 1, 2, 0, tzinfo=UTC), datetime(2026, 6, 2, 2, 0, tzinfo=UTC)),
    ],
)
def test_a_daily_job_runs_next_at_its_local_time(settings, now, expected):
    job = Recurring("nightly", "contacts.tasks.compute_all_metrics", daily_at=time(2))
    assert job.next_run(now) == expected
