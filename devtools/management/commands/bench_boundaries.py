"""Time a boundary test and a dimension comparison on synthetic contacts (rolled back afterwards).

Companies with employee counts from 1 to 5,000, one contact each, `--activities` activities per
contact on average over the last 120 days (a share of them purchases, likelier at larger
companies), a metrics row per contact, and `--segments` static segments of random fifths of the
contacts. Prints the time of boundary_test() with two bracketings, of compare_dimensions() with
four schemes, and with those and a "segments" scheme of the segments, and the winner each found.

`--existing` builds nothing and times the same calls on the database's own contacts (a copy of
crmseg_bench: run compute_metrics on it first, or the ranks of engagement scores are skipped),
its `--segments` largest segments making the "segments" scheme. `--runs N` times each call N
times in one process (the first includes importing scipy and scikit-learn).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from contacts.models import Activity, Company, Contact, ContactMetrics
from segments.boundaries import (
    BoundaryReport,
    DimensionReport,
    boundary_test,
    compare_dimensions,
    parse_bracketing,
)
from segments.models import Membership, Segment

KINDS = ["email_open", "email_click", "page_view", "site_visit", "content_download"]
LEVELS = ["highly_engaged", "moderately_engaged", "disengaged"]
TOPICS = ["cloud", "security", "data", "ai", ""]


class Rollback(Exception):
    pass


class Command(BaseCommand):
    help = "Benchmark segments.boundaries on synthetic data (rolled back afterwards)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contacts", type=int, default=100_000)
        parser.add_argument("--activities", type=float, default=10, help="per contact, on average")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--segments", type=int, default=5, help="in the 'segments' scheme")
        parser.add_argument("--existing", action="store_true", help="time on the database's own contacts")
        parser.add_argument("--runs", type=int, default=1, help="times each call is timed")

    def handle(self, *args, **options) -> None:
        rng = random.Random(options["seed"])
        if options["existing"]:
            segments = list(Segment.objects.exclude(size=0).order_by("-size")[: options["segments"]])
            self.stdout.write(f"{Contact.objects.count():,} contacts, {ContactMetrics.objects.count():,} metrics rows")
            self.measure(segments, runs=options["runs"])
            return
        try:
            with transaction.atomic():
                segments = self.build(rng, **options)
                self.measure(segments, runs=options["runs"])
                raise Rollback
        except Rollback:
            self.stdout.write("synthetic data rolled back")

    def build(self, rng: random.Random, **options) -> list[Segment]:
        tag, now, begun = uuid.uuid4().hex[:8], timezone.now(), time.perf_counter()
        sizes = [int(rng.paretovariate(0.8)) % 5000 + 1 for _ in range(options["contacts"])]
        companies = Company.objects.bulk_create(
            (
                Company(name=f"B{i}", domain=f"b{tag}{i}.invalid", employee_count=n, industry=rng.choice("abcdef"))
                for i, n in enumerate(sizes)
            ),
            batch_size=10_000,
        )
        contacts = Contact.objects.bulk_create(
            (Contact(email=f"b{tag}{i}@bench.invalid", company=c) for i, c in enumerate(companies)), batch_size=10_000
        )

        def activities():
            for contact, size in zip(contacts, sizes, strict=True):
                for _ in range(rng.randrange(int(2 * options["activities"]) + 1)):
                    when = now - timedelta(days=rng.uniform(0, 120))
                    yield Activity(contact=contact, kind=rng.choice(KINDS), occurred_at=when)
                if rng.random() < (0.25 if size >= 500 else 0.04):
                    yield Activity(contact=contact, kind="purchase", value=500, occurred_at=now - timedelta(days=3))

        Activity.objects.bulk_create(activities(), batch_size=20_000)
        ContactMetrics.objects.bulk_create(
            (
                ContactMetrics(
                    contact=c, as_of=now, engagement_score=rng.random() * 100, engagement_level=rng.choice(LEVELS),
                    top_topic=rng.choice(TOPICS), email_engagement_level="disengaged", web_activity_level="inactive",
                )
                for c in contacts
            ),
            batch_size=10_000,
        )  # fmt: skip
        segments = [
            Segment.objects.create(name=f"Bench {tag} {k}", slug=f"bench-{tag}-{k}", kind="static")
            for k in range(options["segments"])
        ]
        Membership.objects.bulk_create(
            (Membership(segment=s, contact=c) for s in segments for c in contacts if rng.random() < 0.2),
            batch_size=20_000,
        )
        if connection.vendor == "postgresql":
            tables = [m._meta.db_table for m in (Company, Contact, Activity, ContactMetrics, Membership)]
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE " + ", ".join(tables))
        self.stdout.write(
            f"{connection.vendor}: {len(contacts):,} contacts, {Activity.objects.count():,} activities in the "
            f"database; built in {time.perf_counter() - begun:.0f} s"
        )
        return segments

    def measure(self, segments: list[Segment], *, runs: int) -> None:
        small = parse_bracketing([{"from": 1, "to": 50}, {"from": 50, "to": 250}, {"from": 250}], where="a")
        large = parse_bracketing([{"from": 1, "to": 100}, {"from": 100, "to": 500}, {"from": 500}], where="b")
        schemes = ["firmographic", "behavioral", "lifecycle", "rfv"]
        calls: list[tuple[str, Callable[[], BoundaryReport | DimensionReport]]] = [
            ("boundary_test()", lambda: boundary_test("company.employee_count", [small, large])),
            ("compare_dimensions(), 4 schemes", lambda: compare_dimensions(schemes)),
        ]
        if segments:
            calls.append(
                (
                    f"compare_dimensions(), 4 schemes and {len(segments)} segments",
                    lambda: compare_dimensions([*schemes, "segments"], segments=segments),
                )
            )
        for name, call in calls:
            for _ in range(runs):
                begun = time.perf_counter()
                report = call()
                self.stdout.write(f"{name}: {time.perf_counter() - begun:.2f} s; {report.summary}")
