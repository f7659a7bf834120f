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
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import override_settings

from contacts.metrics.compute import MetricsSummary, compute_metrics
from contacts.models import Activity, Contact, ContactMetrics
from devtools import metrics_data
from devtools.measure import peak_rss_mb


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
        parser.add_argument(
            "--existing",
            action="store_true",
            help="Use the contacts and activities in the database as they are (e.g. a copy of bench_segments' data)",
        )
        parser.add_argument(
            "--touched",
            default="",
            help="Comma-separated numbers of touched contacts (e.g. 1000,10000,100000): time and temporary "
            "bytes of an incremental run of each, forced incremental and as compute_metrics chooses, "
            "beside the full run",
        )

    def handle(
        self,
        *args,
        contacts: int,
        activities: int,
        reuse: bool,
        incremental_only: bool,
        existing: bool,
        touched: str,
        **options,
    ):
        if connection.vendor != "postgresql":
            raise CommandError("bench_metrics runs on PostgreSQL (set DATABASE_URL=postgres://...).")
        name = connection.settings_dict["NAME"]
        if "bench" not in name:
            raise CommandError(f"bench_metrics deletes all contacts; run it on a database named *bench*, not {name!r}.")
        try:
            touched_sizes = [int(size) for size in touched.split(",") if size.strip()]
        except ValueError:
            raise CommandError(f"--touched takes comma-separated whole numbers, not {touched!r}.") from None
        have = (Contact.objects.count(), Activity.objects.count())
        if existing:
            contacts, activities = have
        figures: dict[str, object] = {"contacts": contacts, "activities": activities}
        if existing:
            self.stdout.write(f"Using the {contacts:,} contacts and {activities:,} activities stored.")
        elif reuse and have == (contacts, activities):
            self.stdout.write(f"Reusing {contacts:,} contacts and {activities:,} activities.")
        else:
            figures["generate_s"] = self.generate(contacts, activities)
        if incremental_only and not ContactMetrics.objects.exists():
            raise CommandError("--incremental-only needs stored metrics: run bench_metrics once without it.")
        for label in [] if incremental_only else ["full_first_s", "full_again_s"]:
            started, temp_before = time.monotonic(), temp_bytes()
            summary = compute_metrics()
            figures[label] = round(time.monotonic() - started, 2)
            figures[f"{label.removesuffix('_s')}_temp_bytes"] = temp_bytes() - temp_before
            figures["future_activities_ignored"] = summary.future_activities_ignored
            self.stdout.write(f"{label}: {figures[label]} s  ({summary})")
            self.report_steps(figures, label, summary)
        sample = list(Contact.objects.order_by("?").values_list("pk", flat=True)[:100])
        started = time.monotonic()
        summary = compute_metrics(contact_ids=sample)
        figures["incremental_100_s"] = round(time.monotonic() - started, 3)
        self.report_steps(figures, "incremental_100_s", summary)
        if touched_sizes:
            figures["touched"] = self.touched_runs(touched_sizes, figures)
        figures["peak_rss_mb"] = peak_rss_mb()
        self.stdout.write(f"incremental_100_s: {figures['incremental_100_s']} s")
        self.stdout.write(f"peak RSS of this process: {figures['peak_rss_mb']} MB")
        if options["json"]:
            with open(options["json"], "w") as handle:
                handle.write(json_dumps(figures))
        self.stdout.write(json_dumps(figures))

    def touched_runs(self, sizes: list[int], figures: dict[str, object]) -> list[dict[str, object]]:
        """Incremental runs of `sizes` random contacts: forced incremental, then as compute_metrics
        chooses (a full run past METRICS_INCREMENTAL_MAX_PERCENT), each with its time and the
        temporary bytes every session of the database wrote meanwhile (pg_stat_database)."""
        rows = []
        for size in sizes:
            sample = list(Contact.objects.order_by("?").values_list("pk", flat=True)[:size])
            row: dict[str, object] = {"touched": len(sample)}
            for path, percent in [("incremental", 100), ("chosen", settings.METRICS_INCREMENTAL_MAX_PERCENT)]:
                with override_settings(METRICS_INCREMENTAL_MAX_PERCENT=percent):
                    started, temp_before = time.monotonic(), temp_bytes()
                    summary = compute_metrics(contact_ids=sample)
                    row[f"{path}_s"] = round(time.monotonic() - started, 2)
                    row[f"{path}_temp_bytes"] = temp_bytes() - temp_before
                    row[f"{path}_steps_s"] = {name: ms / 1000 for name, ms in summary.steps_ms.items()}
                    if path == "chosen":
                        row["chosen"] = "full" if summary.full else "incremental"
            rows.append(row)
        full_s = figures.get("full_again_s", "-")
        full_temp = figures.get("full_again_temp_bytes", "-")
        self.stdout.write(f"Full run: {full_s} s, {full_temp} temporary bytes")
        self.stdout.write(
            f"{'touched':>9} {'incremental s':>14} {'temp bytes':>12} {'chosen':>12} {'chosen s':>9} {'temp bytes':>12}"
        )
        for row in rows:
            self.stdout.write(
                f"{row['touched']:>9,} {row['incremental_s']:>14} {row['incremental_temp_bytes']:>12,} "
                f"{row['chosen']:>12} {row['chosen_s']:>9} {row['chosen_temp_bytes']:>12,}"
            )
        return rows

    def report_steps(self, figures: dict[str, object], label: str, summary: MetricsSummary) -> None:
        steps = {name: ms / 1000 for name, ms in summary.steps_ms.items()}
        figures[f"{label.removesuffix('_s')}_steps_s"] = steps
        self.stdout.write("    " + ", ".join(f"{name}: {seconds:.2f} s" for name, seconds in steps.items()))

    def generate(self, contacts: int, activities: int) -> float:
        started = time.monotonic()
        metrics_data.generate(contacts, activities, say=self.stdout.write)
        elapsed = round(time.monotonic() - started, 1)
        self.stdout.write(f"Generated in {elapsed} s")
        return elapsed


def temp_bytes() -> int:
    """Temporary file bytes written in this database so far (pg_stat_database), this session's included."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")  # this session's counts, once it is idle
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def json_dumps(figures: dict) -> str:
    return json.dumps(figures, indent=2)
