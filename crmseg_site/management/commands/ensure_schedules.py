"""Create or correct the recurring jobs now and print them: what `migrate` does at its end
(crmseg_site/schedules.py), e.g. after changing an interval setting without migrating."""

from django.core.management.base import BaseCommand
from django_q.models import Schedule

from crmseg_site.schedules import ensure_schedules


class Command(BaseCommand):
    help = (
        "Create or correct the recurring django-q2 Schedules (migrate does this at its end): the segment "
        "refresh sweep, the watchdog of runs, automations, the nightly metrics and the nightly analytics."
    )

    def handle(self, *args, **options) -> None:
        for schedule in ensure_schedules():
            every = f"every {schedule.minutes} minute(s)" if schedule.schedule_type == Schedule.MINUTES else "daily"
            self.stdout.write(f"{schedule.name}: {every}, next run {schedule.next_run:%Y-%m-%d %H:%M}")
