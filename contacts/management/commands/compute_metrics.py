"""python manage.py compute_metrics [--as-of DATETIME] [--contact ID ...]"""

from django.core.management.base import BaseCommand, CommandError

from contacts.metrics.compute import compute_metrics
from contacts.models import parse_iso_datetime


class Command(BaseCommand):
    help = "Recompute ContactMetrics (engagement, interests, RFV, velocity, tenure) set-based, and print a summary."

    def add_arguments(self, parser):
        parser.add_argument(
            "--as-of", help="ISO datetime to measure from (default now); later activities are ignored and counted"
        )
        parser.add_argument(
            "--contact", type=int, action="append", dest="contact_ids", help="Only this contact id (repeatable)"
        )

    def handle(self, *args, as_of: str | None, contact_ids: list[int] | None, **options):
        when = None
        if as_of:
            try:
                when = parse_iso_datetime(as_of)
            except ValueError:
                message = f"--as-of {as_of!r} is not an ISO datetime (e.g. 2026-01-31T00:00:00+00:00)"
                raise CommandError(message) from None
        summary = compute_metrics(as_of=when, contact_ids=contact_ids)
        self.stdout.write(f"as of:                     {summary.as_of.isoformat()}")
        self.stdout.write(f"scope:                     {'all contacts' if summary.full else 'selected contacts'}")
        self.stdout.write(f"contacts:                  {summary.contacts}")
        self.stdout.write(f"activities counted:        {summary.activities_counted}")
        self.stdout.write(f"future activities ignored: {summary.future_activities_ignored}")
        self.stdout.write(f"scoring model version:     {summary.scoring_version}")
        self.stdout.write(f"duration:                  {summary.duration_ms / 1000:.2f} s")
        for step, ms in summary.steps_ms.items():
            self.stdout.write(f"  {step + ':':<24}{ms / 1000:.2f} s")
