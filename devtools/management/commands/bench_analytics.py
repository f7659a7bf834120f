"""Time the segment analytics on the configured database (PostgreSQL, a database whose name has
"bench" in it: it writes) and print each figure.

    DATABASE_URL=postgres://.../crmseg_bench_analytics python manage.py bench_analytics [--spread-history]

1. `--spread-history` first spreads the stored membership history over the past year (a built
   bench database has every join on the day it was built, so a year of rollups would credit
   nothing): each join moves to a random time in the year, each leave a random time after it,
   each current member's joined_at to its last join; then ANALYZE.
2. nightly rollup: every day, week, month and quarter of the last `--days` days for the first
   `--segments` segments and the database (what the first nightly run or a backfill does).
3. incremental update: a day of new activities (`--new-activities`), lifecycle moves and
   membership changes written for today, then the update the nightly schedule runs.
4. pages: the comparison page and a segment's analytics page, median of `--repeat` and queries.
5. overlap of 10 segments, median of `--repeat`.

Peak RSS is this process's (devtools.measure), read after each phase.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from contacts.models import Activity, Contact, LifecycleChange
from devtools.measure import peak_rss_mb
from segments.analytics import updates
from segments.analytics.overlap import overlap
from segments.analytics.periods import last_full_quarter
from segments.models import AnalyticsState, Membership, MembershipChange, Segment, SegmentStatus


class Command(BaseCommand):
    help = "Nightly rollup, incremental update, page and overlap timings of segment analytics (writes: bench DBs only)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--segments", type=int, default=30)
        parser.add_argument("--days", type=int, default=365)
        parser.add_argument("--new-activities", type=int, default=27_000)
        parser.add_argument("--repeat", type=int, default=5)
        parser.add_argument("--spread-history", action="store_true")
        parser.add_argument("--skip-nightly", action="store_true", help="Reuse the stored rollups")

    def handle(self, *args, **options) -> None:
        name = settings.DATABASES["default"]["NAME"]
        if connection.vendor != "postgresql" or "bench" not in str(name):
            raise CommandError(f"Run this on a PostgreSQL database with 'bench' in its name, not {name!r}: it writes.")
        chosen = list(Segment.objects.exclude(status=SegmentStatus.ARCHIVED).order_by("pk")[: options["segments"]])
        Segment.objects.exclude(pk__in=[s.pk for s in chosen]).update(status=SegmentStatus.ARCHIVED)
        self.stdout.write(
            f"contacts={Contact.objects.count():,} activities≈{self.estimate('contacts_activity'):,} "
            f"memberships={Membership.objects.count():,} history rows={MembershipChange.objects.count():,} "
            f"segments analysed={len(chosen)}"
        )
        if options["spread_history"]:
            started = time.perf_counter()
            self.spread_history(options["days"])
            self.stdout.write(f"spread history over {options['days']} days: {time.perf_counter() - started:.1f} s")
        today = timezone.localdate()
        if not options["skip_nightly"]:
            started = time.perf_counter()
            periods = updates.backfill(today - timedelta(days=options["days"] - 1))
            self.stdout.write(
                f"nightly rollup ({options['days']} days, {len(chosen)} segments + database, {periods} periods): "
                f"{time.perf_counter() - started:.1f} s, peak RSS {peak_rss_mb():.0f} MB"
            )
        self.write_a_day(options["new_activities"], chosen)
        started = time.perf_counter()
        result = updates.update_analytics()
        self.stdout.write(
            f"incremental update ({options['new_activities']:,} new activities, {result['days']} day(s), "
            f"{result['periods']} periods): {time.perf_counter() - started:.1f} s, peak RSS {peak_rss_mb():.0f} MB"
        )
        self.pages(chosen, options["repeat"])
        ten = chosen[:10]
        times = []
        for _ in range(options["repeat"]):
            started = time.perf_counter()
            overlapped = overlap(ten)
            times.append((time.perf_counter() - started) * 1000)
        self.stdout.write(
            f"overlap of {len(ten)} segments ({sum(overlapped.sizes):,} memberships): "
            f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms"
        )
        self.stdout.write(f"peak RSS {peak_rss_mb():.0f} MB")

    def estimate(self, table: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])
            row = cursor.fetchone()
        return max(row[0], 0) if row else 0

    def spread_history(self, days: int) -> None:
        change, membership = MembershipChange._meta.db_table, Membership._meta.db_table
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"""UPDATE {change} SET changed_at = now() - random() * interval '{int(days)} days'
                WHERE kind = 'join'"""
            )
            cursor.execute(
                f"""UPDATE {change} l SET changed_at = j.changed_at + random() * (now() - j.changed_at)
                FROM {change} j WHERE l.kind = 'leave' AND j.kind = 'join' AND j.segment_id = l.segment_id
                AND j.contact_id = l.contact_id AND j.id < l.id"""
            )
            cursor.execute(
                f"""UPDATE {membership} m SET joined_at = c.last_join FROM (
                    SELECT segment_id, contact_id, MAX(changed_at) AS last_join FROM {change}
                    WHERE kind = 'join' GROUP BY 1, 2) c
                WHERE c.segment_id = m.segment_id AND c.contact_id = m.contact_id"""
            )
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {change}")
            cursor.execute(f"ANALYZE {membership}")
        AnalyticsState.objects.all().delete()

    def write_a_day(self, count: int, chosen: list[Segment]) -> None:
        """Today's arrivals: activities for random contacts, a few lifecycle moves and joins."""
        now = timezone.now()
        activity, lifecycle = Activity._meta.db_table, LifecycleChange._meta.db_table
        contact = Contact._meta.db_table
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"""INSERT INTO {activity} (contact_id, kind, occurred_at, topic, product, url, campaign, created_at)
                SELECT c.id, (ARRAY['email_open', 'email_click', 'site_visit', 'page_view'])[1 + g %% 4],
                    %s - random() * interval '20 hours', '', '', '', 'bench-day', %s
                FROM generate_series(1, %s) g
                JOIN {contact} c ON c.id = 1 + (g * 7919) %% (SELECT MAX(id) FROM {contact})""",
                [now, now, count],
            )
            cursor.execute(
                f"""INSERT INTO {lifecycle} (contact_id, from_stage, to_stage, changed_at)
                SELECT id, 'opportunity', 'customer', %s FROM {contact} ORDER BY id DESC LIMIT 200""",
                [now],
            )
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {activity}")

    def pages(self, chosen: list[Segment], repeat: int) -> None:
        host = next((h.lstrip(".") for h in settings.ALLOWED_HOSTS if h != "*"), "localhost")
        with transaction.atomic():
            user = get_user_model().objects.create_user(
                "bench-analytics-ops", password="x", is_staff=True, is_superuser=True
            )
            client = Client(SERVER_NAME=host)
            client.force_login(user)
            period = last_full_quarter(timezone.localdate()).label
            biggest = max(chosen, key=lambda s: s.size)
            pages = [
                (
                    f"comparison page ({len(chosen)} segments, {period})",
                    reverse("segments-analytics"),
                    {"period": period},
                ),
                (
                    f"segment analytics page ({biggest.slug}, {biggest.size:,} members)",
                    reverse("segments-analytics-detail", args=[biggest.pk]),
                    {"period": period},
                ),
                ("comparison API", "/api/v1/analytics/segments/", {"period": period}),
            ]
            for label, url, params in pages:
                response = client.get(url, params, secure=True)
                if response.status_code != 200:
                    self.stdout.write(f"{label}: HTTP {response.status_code}")
                    continue
                times = []
                for _ in range(repeat):
                    with CaptureQueriesContext(connection) as queries:
                        started = time.perf_counter()
                        client.get(url, params, secure=True)
                        times.append((time.perf_counter() - started) * 1000)
                self.stdout.write(
                    f"{label}: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms, "
                    f"{len(queries)} queries"
                )
            transaction.set_rollback(True)
