"""Bring the segment analytics rollups up to date, or recompute them from a date (backfill)."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from segments.analytics import updates


class Command(BaseCommand):
    help = (
        "Without --since: the incremental update the nightly schedule runs (periods with new activities, "
        "deals, lifecycle moves or membership changes; the first run backfills a year). "
        "With --since DATE: recompute every day, week, month and quarter from DATE to today."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--since", help="First day to recompute, YYYY-MM-DD")

    def handle(self, *args, since: str | None = None, **options) -> None:
        started = timezone.now()
        if since:
            try:
                first = date.fromisoformat(since)
            except ValueError:
                raise CommandError(f"--since: {since!r} is not a date; write YYYY-MM-DD.") from None
            if first > timezone.localdate():
                raise CommandError(f"--since: {first} is in the future; nothing to compute.")
            periods = updates.backfill(first)
            what = f"backfilled from {first}"
        else:
            result = updates.update_analytics()
            periods = result["periods"]
            what = "first run: backfilled a year" if result["backfill"] else f"{result['days']} day(s) with new data"
        seconds = (timezone.now() - started).total_seconds()
        self.stdout.write(f"segment analytics: {what}; {periods} period(s) recomputed in {seconds:.1f} s")
