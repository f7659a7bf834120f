"""bench_governance: time the governance report, its admin page and its API for N segments.

    DATABASE_URL=postgres://.../crmseg_bench python manage.py bench_governance --segments 1000 --repeat 5

Creates N segments (with owners, backup owners, category policies, a review history, stored health
flags, rule versions and a pending draft here and there) inside a transaction that is rolled back at
the end: the database is left as it was. Each measurement runs once to warm caches, then `--repeat`
times; the median wall time and the number of SQL queries are printed. The issue's target for the
page with 1,000 segments is 300 ms and a query count that does not grow with the segments.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from segments.governance.reminders import notices
from segments.governance.report import Filters, governance_report
from segments.models import (
    Review,
    ReviewKind,
    ReviewPolicy,
    Segment,
    SegmentCategory,
    SegmentHealth,
    SegmentKind,
)

RULE = {"all": [{"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]}]}


class Command(BaseCommand):
    help = "Median time and query count of the governance report, page and API for N segments."

    def add_arguments(self, parser):
        parser.add_argument("--segments", type=int, default=1000)
        parser.add_argument("--repeat", type=int, default=5)

    def handle(self, *args, segments: int, repeat: int, **options):
        with transaction.atomic():
            self.run(segments, repeat)
            transaction.set_rollback(True)

    def run(self, count: int, repeat: int) -> None:
        rng = random.Random(17)
        now = timezone.now()
        users = [
            get_user_model().objects.create_user(f"bench-gov-{n}", f"bench-gov-{n}@example.com", is_staff=True)
            for n in range(40)
        ]
        users[0].is_superuser = True
        users[0].save(update_fields=["is_superuser"])
        categories = SegmentCategory.values
        made = Segment.objects.bulk_create(
            Segment(
                name=f"Bench governance {n:05d}",
                slug=f"bench-governance-{n:05d}",
                kind=SegmentKind.DYNAMIC,
                rule=RULE,
                category=categories[n % len(categories)],
                owner=rng.choice(users) if n % 10 else None,
                backup_owner=rng.choice(users) if n % 3 == 0 else None,
                size=rng.randint(0, 50_000),
                created_at=now - timedelta(days=rng.randint(1, 400)),
            )
            for n in range(count)
        )
        ReviewPolicy.objects.bulk_create(
            ReviewPolicy(category=category, kind=ReviewKind.METRICS, every=2, unit="months")
            for category in categories[:3]
        )
        Review.objects.bulk_create(
            Review(
                segment=segment,
                kind=rng.choice(ReviewKind.values),
                decision="keep",
                recorded_by="bench",
                reviewed_at=now - timedelta(days=rng.randint(1, 200)),
                snapshot={},
            )
            for segment in made
            for _ in range(rng.randint(0, 4))
        )
        SegmentHealth.objects.bulk_create(
            SegmentHealth(
                segment=segment,
                flags=[{"code": "unused", "label": "Unused", "evidence": "no use in 90 days"}] if n % 4 == 0 else [],
            )
            for n, segment in enumerate(made)
        )
        total = Segment.objects.count()
        self.stdout.write(f"{total:,} segments ({count:,} made for the benchmark) on {connection.vendor}")
        host = next((h.lstrip(".") for h in settings.ALLOWED_HOSTS if h != "*"), "localhost")
        client = Client(SERVER_NAME=host)
        client.force_login(users[0])
        page, api = reverse("admin:segments_governance"), reverse("api:governance")

        def get(url: str, **params) -> Callable[[], object]:
            def fetch() -> object:
                response = client.get(url, params)
                assert response.status_code == 200, (url, response.status_code)
                return response

            return fetch

        measured = [
            ("governance report (all rows, in Python)", lambda: governance_report(Filters(), user=users[0])),
            ("governance page (admin, HTML)", get(page)),
            ("governance page, overdue only, by next due", get(page, overdue=1, sort="next_due")),
            ("governance CSV", get(page, format="csv")),
            ("governance API (JSON)", get(api)),
            ("review reminders: today's notices", lambda: notices(today=timezone.localdate())),
        ]
        for label, work in measured:
            self.stdout.write(self.measure(label, work, repeat))

    def measure(self, label: str, work: Callable[[], object], repeat: int) -> str:
        work()  # warm up
        times, cpu = [], []
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                started, started_cpu = time.perf_counter(), time.process_time()
                work()
                times.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - started_cpu) * 1000)
        # CPU time of this process (the database server's excluded) moves less on a busy machine.
        return (
            f"{label:48} median {statistics.median(times):8.1f} ms  "
            f"(this process's CPU {statistics.median(cpu):6.1f} ms; {len(queries)} queries)"
        )
