"""Install the starter catalog of segments (idempotent)."""

import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django_q.tasks import async_task

from segments.catalog import load_catalog
from segments.demo_history import build_history
from segments.governance.demo_reviews import seed_reviews
from segments.models import Segment
from segments.refresh import Outcome, refresh_all


class Command(BaseCommand):
    help = "Create the starter segments that do not exist yet; existing ones (maybe edited) are left alone."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", help="Username to own the new segments and sign their first rule version")
        parser.add_argument(
            "--first-run",
            action="store_true",
            help="Do nothing when any segment exists (so `make run` never brings back a deleted starter segment)",
        )
        parser.add_argument("--refresh", action="store_true", help="Build the segments now, not by the workers")
        parser.add_argument(
            "--history",
            type=int,
            default=0,
            metavar="WEEKS",
            help="With --refresh: first replay the new segments at weekly points over the past WEEKS weeks "
            "(demo data: size charts and analytics with a year of history need 52)",
        )

    def handle(self, *args, owner: str | None, first_run: bool, refresh: bool, history: int, **options) -> None:
        if history and not refresh:
            raise CommandError("--history replays the segments before building them: give --refresh too.")
        if history < 0:
            raise CommandError(f"--history is a number of weeks, 1 or more; got {history}.")
        if first_run and Segment.objects.exists():
            self.stdout.write("Segments exist already; the starter catalog is not loaded again.")
            return
        user = None
        if owner:
            user = get_user_model().objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"No user {owner!r}.")
        created, kept = load_catalog(owner=user)
        for segment in created:
            self.stdout.write(f"created  {segment.slug}")
        for segment in kept:
            self.stdout.write(f"exists   {segment.slug}")
        if not refresh:
            self.stdout.write(
                f"{len(created)} segment(s) created, {len(kept)} already there. "
                "New rule segments are built by the workers; run `manage.py refresh_segments` to build them now."
            )
            return
        if history:
            started = time.monotonic()
            replayed = build_history(now=timezone.now(), weeks=history)
            self.stdout.write(
                f"History: {replayed.points} weekly points, {replayed.writes} membership writes, "
                f"{replayed.joins} joins and {replayed.leaves} leaves in {time.monotonic() - started:.1f} s."
            )
            # The analytics pages read rollups the nightly job writes: the worker backfills the
            # year now (about a minute for the demo), so they are not empty until tomorrow.
            async_task("segments.tasks.update_analytics_task", group="analytics")
            self.stdout.write("Segment analytics for the year: queued for the worker.")
        results = refresh_all()
        failed = [result for result in results if result.status == Outcome.FAILED]
        self.stdout.write(
            f"{len(created)} segment(s) created, {len(kept)} already there; "
            f"{len(results) - len(failed)} built, {len(failed)} failed."
        )
        for result in failed:
            self.stderr.write(f"refresh failed: {result.error}")
        if history and created:
            reviews = seed_reviews(created, now=timezone.now(), reviewer=user)
            self.stdout.write(f"Governance: {reviews} past reviews recorded for the new segments (demo).")
