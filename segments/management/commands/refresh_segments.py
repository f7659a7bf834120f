"""Refresh segments now, in this process, and print what changed."""

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from contacts.models import parse_iso_datetime
from segments.models import Segment
from segments.refresh import Outcome, refresh_order, refresh_segment


class Command(BaseCommand):
    help = (
        "Refresh the given segments (by slug; default: every active rule segment) in dependency order, "
        "waiting for any refresh already running, and print size, added, removed and duration per segment."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slugs", nargs="*", metavar="SLUG")
        parser.add_argument("--now", help="Evaluate relative dates from this ISO-8601 time instead of the current time")

    def handle(self, *args, slugs: list[str], now: str | None, **options) -> None:
        moment = self._parse_now(now) if now else timezone.now()
        ids = None
        if slugs:
            found = dict(Segment.objects.filter(slug__in=slugs).values_list("slug", "pk"))
            missing = [slug for slug in slugs if slug not in found]
            if missing:
                raise CommandError(f"No segment with slug {', '.join(missing)}.")
            ids = list(found.values())
        order = refresh_order(ids)
        if ids is not None and len(order) < len(ids):
            idle = Segment.objects.filter(pk__in=set(ids) - set(order)).order_by("slug")
            for segment in idle:
                self.stderr.write(f"{segment.slug}: not refreshed ({segment.kind}, {segment.status})")
        self.stdout.write(f"{'segment':<40} {'status':<8} {'size':>10} {'added':>9} {'removed':>9} {'ms':>8}")
        failed = 0
        for segment_id in order:
            result = refresh_segment(segment_id, now=moment)
            failed += result.status == Outcome.FAILED
            self.stdout.write(
                f"{result.slug:<40} {result.status:<8} {result.size:>10} {result.added:>9} "
                f"{result.removed:>9} {result.duration_ms:>8}"
            )
            if result.error:
                self.stdout.write(f"    {result.error}")
        self.stdout.write(f"{len(order)} segment(s) refreshed at now={moment.isoformat()}, {failed} failed.")
        if failed:
            raise CommandError(f"{failed} segment refresh(es) failed; the errors are shown above and on the segments.")

    def _parse_now(self, value: str):
        try:
            return parse_iso_datetime(value)
        except ValueError:
            raise CommandError(
                f"--now {value!r} is not an ISO-8601 date-time (e.g. 2026-01-31T09:00:00+00:00)."
            ) from None
