"""Benchmark segment refreshes on PostgreSQL and print the figures the segment engine is held to.

Generates contacts, companies and activities set-based with generate_series, installs ~30
segments, then measures: cold build, refresh at 0% / 1% / 10% churn (time and rows written),
each segment against the same diff written by hand as one FULL JOIN statement, a naive
per-contact ORM loop on a sample (extrapolated), refresh_contacts latency for one contact across
all segments, preview counts, and peak RSS. Prints a table and writes JSON.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmseg_bench python manage.py bench_segments

An existing data set is replaced only in a database whose name contains "bench"; elsewhere the
command needs empty contact tables (as in a test database).
"""

from __future__ import annotations

import json
import logging
from argparse import ArgumentTypeError
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from contacts.models import Activity, Contact
from devtools.measure import peak_rss_mb
from devtools.segment_bench import PREFIX, Bench
from segments.models import Segment

SMALL = {"contacts": 2_000, "activities": 20_000, "sample": 20, "latency_rounds": 20}
ONLY_PHASES = ("baseline", "preview", "latency")


def _phases(value: str) -> list[str]:
    phases = [phase.strip() for phase in value.split(",") if phase.strip()]
    unknown = sorted(set(phases) - set(ONLY_PHASES))
    if unknown or not phases:
        raise ArgumentTypeError(f"choose from {', '.join(ONLY_PHASES)} (got {value!r})")
    return phases


class Command(BaseCommand):
    help = "Benchmark segment refreshes on PostgreSQL (default 1M contacts, 10M activities); print and write JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contacts", type=int, default=1_000_000)
        parser.add_argument("--activities", type=int, default=10_000_000)
        parser.add_argument("--small", action="store_true", help="2,000 contacts and 20,000 activities (CI)")
        parser.add_argument("--sample", type=int, default=200, help="Contacts timed in the naive per-contact loop")
        parser.add_argument("--latency-rounds", type=int, default=200, help="refresh_contacts calls timed")
        parser.add_argument("--baseline-runs", type=int, default=2, help="Runs per segment, best kept, for each side")
        parser.add_argument(
            "--reuse-data",
            action="store_true",
            help="Keep the contacts and activities of an earlier run (bench databases only); rebuild the segments",
        )
        parser.add_argument(
            "--only",
            type=_phases,
            help=f"Comma-separated phases ({', '.join(ONLY_PHASES)}) to run alone on the data and segments already "
            "in a bench database (built first if missing). baseline churns 1%% of contacts first and leaves "
            "that churn unrefreshed, so repeated runs compare the same kind of diff; latency times refresh_contacts "
            "across 50 segments (the 20 latency segments are built first if missing).",
        )
        parser.add_argument("--output", default=str(Path(settings.BASE_DIR) / "var" / "bench_segments.json"))

    def handle(self, *args, **options) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("bench_segments needs PostgreSQL (DATABASE_URL=postgres://.../crmseg_bench).")
        sizes = dict(SMALL) if options["small"] else {
            "contacts": options["contacts"],
            "activities": options["activities"],
            "sample": options["sample"],
            "latency_rounds": options["latency_rounds"],
        }  # fmt: skip
        if sizes["contacts"] < 10:
            raise CommandError("--contacts must be at least 10.")
        self._check_database()
        # Installing segments queues their builds (which the benchmark runs itself and drops):
        # django-q's "Enqueued" line for each would break up the printed figures.
        queue_log = logging.getLogger("django-q")
        level = queue_log.level
        queue_log.setLevel(logging.WARNING)
        try:
            self._bench(options, sizes)
        finally:
            queue_log.setLevel(level)

    def _bench(self, options: dict, sizes: dict) -> None:
        output = Path(options["output"])
        output.parent.mkdir(parents=True, exist_ok=True)
        reuse = (options["reuse_data"] or options["only"]) and "bench" in connection.settings_dict["NAME"]
        reuse = reuse and Contact.objects.exists()
        if reuse:
            sizes["contacts"], sizes["activities"] = Contact.objects.count(), Activity.objects.count()
        bench = Bench(
            contacts=sizes["contacts"],
            activities=sizes["activities"],
            sample=sizes["sample"],
            log=self.stdout.write,
            baseline_runs=options["baseline_runs"],
            checkpoint=lambda report: output.write_text(json.dumps(report, indent=2, default=str)),
        )
        self.stdout.write(f"bench_segments: {sizes['contacts']:,} contacts, {sizes['activities']:,} activities")
        if options["only"]:
            self._only(bench, options["only"], output, latency_rounds=sizes["latency_rounds"])
            return
        bench.reset(keep_data=reuse)
        if reuse:
            self.stdout.write("reusing the contacts and activities already in the database")
        else:
            bench.generate()
        bench.install_segments()
        bench.refresh_phase("cold_build")
        zero = bench.refresh_phase("churn_0")  # time-relative rules may move a few contacts as time passes
        bench.refresh_phase("repeat_0", now=datetime.fromisoformat(zero["now"]))  # the same now: nothing to write
        for percent in (1, 10):
            bench.report["phases"].setdefault("churned_contacts", {})[f"{percent}%"] = bench.churn(percent)
            if percent == 1:
                bench.baseline_comparison()
            bench.refresh_phase(f"churn_{percent}")
        bench.naive_loop()
        bench.install_latency_segments()
        bench.refresh_contacts_latency(sizes["latency_rounds"])
        bench.preview_counts()
        bench.report["peak_rss_mb"] = peak_rss_mb()
        self._print_table(bench.report)
        output.write_text(json.dumps(bench.report, indent=2, default=str))
        self.stdout.write(f"peak RSS {bench.report['peak_rss_mb']} MB; JSON written to {output}")

    def _only(self, bench: Bench, phases: list[str], output: Path, *, latency_rounds: int) -> None:
        if not Contact.objects.exists() or "bench" not in connection.settings_dict["NAME"]:
            raise CommandError("--only needs a bench database holding the data of an earlier run.")
        if not Segment.objects.filter(slug__startswith=PREFIX, last_refresh_started_at__isnull=False).exists():
            bench.reset(keep_data=True)
            bench.install_segments()
            bench.refresh_phase("cold_build")
        if "baseline" in phases:
            bench.report["phases"]["churned_contacts"] = {"1%": bench.churn(1)}
            bench.baseline_comparison()
        if "preview" in phases:
            bench.preview_counts()
        if "latency" in phases:
            bench.install_latency_segments()
            bench.store_missing_thresholds()
            bench.refresh_contacts_latency(latency_rounds)
        output.write_text(json.dumps(bench.report, indent=2, default=str))
        self.stdout.write(f"JSON written to {output}")

    def _check_database(self) -> None:
        call_command("migrate", verbosity=0)
        if "bench" in connection.settings_dict["NAME"]:
            return
        if Contact.objects.exists() or Segment.objects.exists():
            raise CommandError(
                f"Database {connection.settings_dict['NAME']!r} has contacts or segments; bench_segments replaces "
                "all of them. Use a database whose name contains 'bench' (e.g. crmseg_bench)."
            )

    def _print_table(self, report: dict) -> None:
        phases = report["phases"]
        baseline = report["baseline"]["segments"]
        self.stdout.write("")
        header = f"{'segment':<40} {'size':>9} {'cold ms':>9} {'0% ms':>8} {'1% ms':>8} {'10% ms':>8}"
        self.stdout.write(header + f" {'1% rows':>9} {'diff ms':>9} {'ratio':>6} {'hand ms':>9} {'ratio':>6}")
        for slug, cold in phases["cold_build"]["segments"].items():
            one = phases["churn_1"]["segments"][slug]
            base = baseline.get(slug, {})
            self.stdout.write(
                f"{slug:<40} {phases['churn_10']['segments'][slug]['size']:>9,} {cold['ms']:>9,} "
                f"{phases['churn_0']['segments'][slug]['ms']:>8,} {one['ms']:>8,} "
                f"{phases['churn_10']['segments'][slug]['ms']:>8,} {2 * (one['added'] + one['removed']):>9,} "
                f"{base.get('baseline_ms', 0):>9,} {base.get('ratio') or 0:>6} "
                f"{base.get('refresh_baseline_ms', 0):>9,} {base.get('refresh_ratio') or 0:>6}"
            )
        self.stdout.write("")
        for name in ("cold_build", "churn_0", "repeat_0", "churn_1", "churn_10"):
            phase = phases[name]
            self.stdout.write(f"{name:<12} total {phase['seconds']:>8.2f}s  rows written {phase['rows_written']:>12,}")
