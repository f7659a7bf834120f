"""Time experiments: assignment and first exposure in personalize(), a whole send, and the results.

Builds inside a transaction, and rolls back: a campaign with one variant per target segment, the
contacts spread over the segments, a running experiment. Then

1. personalize() on `--calls` contacts with the experiment running (each call assigns the contact
   and records its first exposure) and on as many others with it stopped: p50 / p95 of both and
   the difference;
2. record_send(): every eligible member exposed in one INSERT ... SELECT;
3. clicks planted for a share of the exposed contacts, and experiment_results() timed (median of
   `--repeat` runs), the query that reads every slice and metric included.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from activation.experiment_models import Experiment, ExperimentStatus, Exposure
from activation.experiment_results import experiment_results
from activation.experiments import record_send, start
from activation.models import Campaign, CampaignVariant
from activation.personalization import personalize
from contacts.models import Activity, Contact
from segments.models import Membership, Segment, SegmentKind


class Rollback(Exception):
    pass


def quantiles(timings: list[float]) -> str:
    cuts = statistics.quantiles(timings, n=100)
    return f"p50 {cuts[49]:.2f} ms, p95 {cuts[94]:.2f} ms"


class Command(BaseCommand):
    help = "Benchmark experiment assignment, exposure and results on synthetic data (rolled back afterwards)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contacts", type=int, default=500_000, help="all of them exposed by the send")
        parser.add_argument("--slices", type=int, default=10, help="target segments")
        parser.add_argument("--calls", type=int, default=500)
        parser.add_argument("--click-rate", type=float, default=0.05)
        parser.add_argument("--repeat", type=int, default=3)
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, **options) -> None:
        rng = random.Random(options["seed"])
        try:
            with transaction.atomic():
                experiment, ids = self.build(**options)
                self.personalization(rng, experiment, ids, calls=options["calls"])
                self.send_and_read(rng, experiment, ids, **options)
                raise Rollback
        except Rollback:
            self.stdout.write("synthetic data rolled back")

    def build(self, **options) -> tuple[Experiment, list[int]]:
        tag = uuid.uuid4().hex[:8]
        started = time.perf_counter()
        segments = Segment.objects.bulk_create(
            Segment(name=f"Bench {tag} {i}", slug=f"bench-{tag}-{i}", kind=SegmentKind.STATIC)
            for i in range(options["slices"])
        )
        campaign = Campaign.objects.create(name=f"Bench {tag}", slug=f"bench-{tag}", subject="Generic")
        CampaignVariant.objects.bulk_create(
            CampaignVariant(campaign=campaign, segment=s, priority=i + 1, subject=f"For {s.slug}")
            for i, s in enumerate(segments)
        )
        contacts = Contact.objects.bulk_create(
            (Contact(email=f"bench-{tag}-{i}@bench.invalid") for i in range(options["contacts"])), batch_size=10_000
        )
        Membership.objects.bulk_create(
            (Membership(segment=segments[i % len(segments)], contact=c) for i, c in enumerate(contacts)),
            batch_size=10_000,
        )
        experiment = Experiment.objects.create(campaign=campaign, name=f"Bench {tag}", secondary_metrics=["revenue"])
        experiment.target_segments.set(segments)
        start(experiment)
        self.analyze()
        self.stdout.write(
            f"{connection.vendor}: {len(contacts):,} contacts in {len(segments)} target segments, "
            f"built in {time.perf_counter() - started:.1f} s"
        )
        return experiment, [c.pk for c in contacts]

    def analyze(self) -> None:
        if connection.vendor == "postgresql":
            tables = [m._meta.db_table for m in (Contact, Membership, Exposure, Activity, Segment, CampaignVariant)]
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE " + ", ".join(tables))

    def personalization(self, rng: random.Random, experiment: Experiment, ids: list[int], *, calls: int) -> None:
        """Two disjoint random samples, so that neither pass reads rows the other brought into cache."""
        chosen = rng.sample(ids, 2 * calls + 50)
        for contact_id in chosen[:50]:  # warm-up
            personalize(contact_id=contact_id)
        running, without = [], []
        for contact_id in chosen[50 : 50 + calls]:
            begun = time.perf_counter()
            personalize(contact_id=contact_id)
            running.append((time.perf_counter() - begun) * 1000)
        Experiment.objects.filter(pk=experiment.pk).update(status=ExperimentStatus.STOPPED)
        for contact_id in chosen[50 + calls :]:
            begun = time.perf_counter()
            personalize(contact_id=contact_id)
            without.append((time.perf_counter() - begun) * 1000)
        Experiment.objects.filter(pk=experiment.pk).update(status=ExperimentStatus.RUNNING)
        p95 = statistics.quantiles(running, n=100)[94] - statistics.quantiles(without, n=100)[94]
        self.stdout.write(
            f"personalize() x {calls}, each assigning and recording a first exposure: {quantiles(running)}; "
            f"x {calls} other contacts with the experiment stopped: {quantiles(without)}; p95 difference {p95:.2f} ms"
        )

    def send_and_read(self, rng: random.Random, experiment: Experiment, ids: list[int], **options) -> None:
        exposed_at = timezone.now() - timedelta(days=20)
        begun = time.perf_counter()
        sent = record_send(experiment, now=exposed_at)
        self.stdout.write(f"record_send(): {sent:,} first exposures in {time.perf_counter() - begun:.2f} s")
        Exposure.objects.filter(experiment=experiment).update(exposed_at=exposed_at)
        clicked = rng.sample(ids, int(len(ids) * options["click_rate"]))
        when = exposed_at + timedelta(days=2)
        Activity.objects.bulk_create(
            (
                Activity(contact_id=pk, kind="email_click", campaign=experiment.campaign.slug, occurred_at=when)
                for pk in clicked
            ),
            batch_size=10_000,
        )
        self.analyze()
        timings = []
        for _ in range(options["repeat"]):
            begun = time.perf_counter()
            results = experiment_results(experiment)
            timings.append(time.perf_counter() - begun)
        exposed = sum(row.exposed for row in results.overall.metrics[experiment.metric])
        runs = ", ".join(f"{t:.2f}" for t in timings)
        self.stdout.write(
            f"experiment_results(): {exposed:,} exposures, {len(results.slices) - 1} slices, 2 metrics: "
            f"median {statistics.median(timings):.2f} s of {options['repeat']} ({runs})"
        )
