"""Create or update the recurring segment refresh; run after `migrate` on every deploy (`make run` does)."""

from django.core.management.base import BaseCommand

from segments.tasks import ensure_schedules


class Command(BaseCommand):
    help = "Create or update the django-q2 Schedule that refreshes every segment (SEGMENT_REFRESH_INTERVAL_MINUTES)."

    def handle(self, *args, **options) -> None:
        schedule = ensure_schedules()
        self.stdout.write(
            f"{schedule.name}: every {schedule.minutes} minute(s), next run {schedule.next_run:%Y-%m-%d %H:%M}"
        )
