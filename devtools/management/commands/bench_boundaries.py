"""Time a boundary test and a dimension comparison on synthetic contacts (rolled back afterwards).

Companies with employee counts from 1 to 5,000, one contact each, `--activities` activities per
contact on average over the last 120 days (a share of them purchases, likelier at larger
companies), and a metrics row per contact. Prints the time of boundary_test() with two
bracketings and of compare_dimensions() with four schemes, and the winner each found.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from contacts.models import Activity, Company, Contact, ContactMetrics
from segments.boundaries import boundary_test, compare_dimensions, parse_bracketing

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

    def handle(self, *args, **options) -> None:
        rng = random.Random(options["seed"])
        try:
            with transaction.atomic():
                self.build(rng, **options)
                self.measure()
                raise Rollback
        except Rollback:
            self.stdout.write("synthetic data rolled back")

    def build(self, rng: random.Random, **options) -> None:
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
        if connection.vendor == "postgresql":
            tables = [m._meta.db_table for m in (Company, Contact, Activity, ContactMetrics)]
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE " + ", ".join(tables))
        self.stdout.write(
            f"{connection.vendor}: {len(contacts):,} contacts, {Activity.objects.count():,} activities in the "
            f"database; built in {time.perf_counter() - begun:.0f} s"
        )

    def measure(self) -> None:
        small = parse_bracketing([{"from": 1, "to": 50}, {"from": 50, "to": 250}, {"from": 250}], where="a")
        large = parse_bracketing([{"from": 1, "to": 100}, {"from": 100, "to": 500}, {"from": 500}], where="b")
        begun = time.perf_counter()
        report = boundary_test("company.employee_count", [small, large])
        self.stdout.write(f"boundary_test(): {time.perf_counter() - begun:.2f} s; {report.summary}")
        begun = time.perf_counter()
        dimensions = compare_dimensions(["firmographic", "behavioral", "lifecycle", "rfv"])
        self.stdout.write(f"compare_dimensions(), 4 schemes: {time.perf_counter() - begun:.2f} s; {dimensions.summary}")
