"""Create or update the recurring segment refresh, the watchdog of runs and the nightly analytics;
run after `migrate` on every deploy (`make run` does)."""

from django.core.management.base import BaseCommand

from segments.analytics.updates import ensure_schedule as ensure_analytics_schedule
from segments.tasks import ensure_schedules, ensure_watch_schedule


class Command(BaseCommand):
    help = (
        "Create or update the django-q2 Schedules: the sweep refreshing every segment "
        "(SEGMENT_REFRESH_INTERVAL_MINUTES), the watchdog failing dead runs and retrying failed ones "
        "(RUN_WATCH_MINUTES) and the nightly analytics update."
    )

    def handle(self, *args, **options) -> None:
        for schedule in (ensure_schedules(), ensure_watch_schedule()):
            self.stdout.write(
                f"{schedule.name}: every {schedule.minutes} minute(s), next run {schedule.next_run:%Y-%m-%d %H:%M}"
            )
        nightly = ensure_analytics_schedule()
        self.stdout.write(f"{nightly.name}: daily, next run {nightly.next_run:%Y-%m-%d %H:%M}")
