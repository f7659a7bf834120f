"""python manage.py bench_metrics: time compute_metrics on generated data (PostgreSQL).

Generates contacts and activities set-based with generate_series (one INSERT each), then times a
full compute_metrics (twice: the second replaces the rows of the first) and an incremental run for
100 contacts, printing durations, the time of each step and the process's peak RSS. With --incremental-only it
skips the full runs and times only the incremental one against the metrics already stored. It deletes every contact in
the database it runs against, so it only runs on a database whose name contains "bench"
(e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmseg_benchm).
"""

from __future__ import annotations

import json
import resource
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from contacts.metrics import generated
from contacts.metrics.compute import MetricsSummary, compute_metrics
from contacts.models import Activity, Contact, ContactMetrics


class Command(BaseCommand):
    help = "Benchmark compute_metrics on generated data (PostgreSQL; database name must contain 'bench')."

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=1_000_000)
        parser.add_argument("--activities", type=int, default=10_000_000)
        parser.add_argument("--reuse", action="store_true", help="Keep existing data when the counts match")
        parser.add_argument("--json", help="Also write the figures to this JSON file")
        parser.add_argument(
            "--incremental-only",
            action="store_true",
            help="Skip the full runs; time the incremental run against the metrics already stored",
        )

    def handle(self, *args, contacts: int, activities: int, reuse: bool, incremental_only: bool, **options):
        if connection.vendor != "postgresql":
            raise CommandError("bench_metrics runs on PostgreSQL (set DATABASE_URL=postgres://...).")
        name = connection.settings_dict["NAME"]
        if "bench" not in name:
            raise CommandError(f"bench_metrics deletes all contacts; run it on a database named *bench*, not {name!r}.")
        figures: dict[str, object] = {"contacts": contacts, "activities": activities}
        have = (Contact.objects.count(), Activity.objects.count())
        if reuse and have == (contacts, activities):
            self.stdout.write(f"Reusing {contacts:,} contacts and {activities:,} activities.")
        else:
            figures["generate_s"] = self.generate(contacts, activities)
        if incremental_only and not ContactMetrics.objects.exists():
            raise CommandError("--incremental-only needs stored metrics: run bench_metrics once without it.")
        for label in [] if incremental_only else ["full_first_s", "full_again_s"]:
            started = time.monotonic()
            summary = compute_metrics()
            figures[label] = round(time.monotonic() - started, 2)
            figures["future_activities_ignored"] = summary.future_activities_ignored
            self.stdout.write(f"{label}: {figures[label]} s  ({summary})")
            self.report_steps(figures, label, summary)
        sample = list(Contact.objects.order_by("?").values_list("pk", flat=True)[:100])
        started = time.monotonic()
        summary = compute_metrics(contact_ids=sample)
        figures["incremental_100_s"] = round(time.monotonic() - started, 3)
        self.report_steps(figures, "incremental_100_s", summary)
        figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        self.stdout.write(f"incremental_100_s: {figures['incremental_100_s']} s")
        self.stdout.write(f"peak RSS of this process: {figures['peak_rss_mb']} MB")
        if options["json"]:
            with open(options["json"], "w") as handle:
                handle.write(json_dumps(figures))
        self.stdout.write(json_dumps(figures))

    def report_steps(self, figures: dict[str, object], label: str, summary: MetricsSummary) -> None:
        steps = {name: ms / 1000 for name, ms in summary.steps_ms.items()}
        figures[f"{label.removesuffix('_s')}_steps_s"] = steps
        self.stdout.write("    " + ", ".join(f"{name}: {seconds:.2f} s" for name, seconds in steps.items()))

    def generate(self, contacts: int, activities: int) -> float:
        started = time.monotonic()
        generated.generate(contacts, activities, say=self.stdout.write)
        elapsed = round(time.monotonic() - started, 1)
        self.stdout.write(f"Generated in {elapsed} s")
        return elapsed


def json_dumps(figures: dict) -> str:
    return json.dumps(figures, indent=2)
