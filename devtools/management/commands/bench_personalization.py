"""Time personalize() the way a website would call it: one contact per page view.

Builds a synthetic data set (contacts, static segments with memberships, campaigns with variants)
inside a transaction, times `--calls` calls on random contacts and rolls everything back, so the
database is left as it was. Prints p50/p95/p99 latency and the queries per call.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from activation.models import Campaign, CampaignVariant
from activation.personalization import personalize
from contacts.models import Contact
from segments.models import Membership, Segment, SegmentKind

INTERESTS = ["cloud", "security", "finops", "kubernetes", "ai", "data", "devops", "compliance"]


class Rollback(Exception):
    pass


class Command(BaseCommand):
    help = "Benchmark activation.personalization.personalize() on synthetic data (rolled back afterwards)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contacts", type=int, default=3000)
        parser.add_argument("--segments", type=int, default=30)
        parser.add_argument("--campaigns", type=int, default=5)
        parser.add_argument("--variants", type=int, default=6, help="variants per campaign")
        parser.add_argument("--max-segments-per-contact", type=int, default=8)
        parser.add_argument("--calls", type=int, default=1000)
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, **options) -> None:
        rng = random.Random(options["seed"])
        try:
            with transaction.atomic():
                contact_ids, emails = self.build(rng, **options)
                self.measure(rng, contact_ids, emails, calls=options["calls"])
                raise Rollback
        except Rollback:
            self.stdout.write("synthetic data rolled back")

    def build(self, rng: random.Random, **options) -> tuple[list[int], list[str]]:
        tag = uuid.uuid4().hex[:8]
        segments = Segment.objects.bulk_create(
            Segment(name=f"Bench {tag} {i}", slug=f"bench-{tag}-{i}", kind=SegmentKind.STATIC)
            for i in range(options["segments"])
        )
        contacts = Contact.objects.bulk_create(
            Contact(
                email=f"bench-{tag}-{i}@bench.invalid",
                first_name="Bench",
                interests=rng.sample(INTERESTS, rng.randint(0, 3)),
            )
            for i in range(options["contacts"])
        )
        memberships = [
            Membership(segment=segment, contact=contact)
            for contact in contacts
            for segment in rng.sample(segments, rng.randint(0, options["max_segments_per_contact"]))
        ]
        Membership.objects.bulk_create(memberships, batch_size=5000)
        for c in range(options["campaigns"]):
            campaign = Campaign.objects.create(
                name=f"Bench {tag} {c}",
                slug=f"bench-{tag}-{c}",
                subject="Default",
                cta_text="Go",
                cta_url="https://example.com",
            )
            CampaignVariant.objects.bulk_create(
                CampaignVariant(campaign=campaign, segment=segment, priority=p + 1, subject=f"For {segment.slug}")
                for p, segment in enumerate(rng.sample(segments, min(options["variants"], len(segments))))
            )
        if connection.vendor == "postgresql":
            # Fresh rows inside an open transaction: give the planner statistics, as autovacuum would.
            tables = [m._meta.db_table for m in (Contact, Segment, Membership, Campaign, CampaignVariant)]
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE " + ", ".join(tables))
        self.stdout.write(
            f"{connection.vendor}: {len(contacts)} contacts, {len(segments)} segments, {len(memberships)} memberships, "
            f"{options['campaigns']} active campaigns x {options['variants']} variants"
        )
        return [c.pk for c in contacts], [c.email for c in contacts]

    def measure(self, rng: random.Random, contact_ids: list[int], emails: list[str], *, calls: int) -> None:
        for _ in range(50):  # warm-up: connection, statement caches
            personalize(contact_id=rng.choice(contact_ids))
        with CaptureQueriesContext(connection) as queries:
            personalize(email=rng.choice(emails))
        timings = []
        cpu_started = time.process_time()
        for i in range(calls):
            lookup = {"contact_id": rng.choice(contact_ids)} if i % 2 else {"email": rng.choice(emails)}
            started = time.perf_counter()
            personalize(**lookup)
            timings.append((time.perf_counter() - started) * 1000)
        cpu_ms = (time.process_time() - cpu_started) * 1000 / calls
        cuts = statistics.quantiles(timings, n=100)
        self.stdout.write(
            f"personalize() x {calls} (half by id, half by email): "
            f"p50 {cuts[49]:.2f} ms, p95 {cuts[94]:.2f} ms, p99 {cuts[98]:.2f} ms, max {max(timings):.2f} ms, "
            f"mean {statistics.fmean(timings):.2f} ms; {len(queries)} queries per call; "
            f"{cpu_ms:.2f} ms of this process's CPU per call (the rest is waiting on the database and the machine)"
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # the floor: one round trip that does nothing
            started = time.perf_counter()
            for _ in range(200):
                cursor.execute("SELECT 1")
            self.stdout.write(f"one empty round trip: {(time.perf_counter() - started) * 5:.2f} ms")
