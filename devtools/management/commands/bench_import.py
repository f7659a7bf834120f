"""bench_import: time a contact CSV import of N rows x 20 columns, its peak RSS and its progress interval.

    make manage ARGS="bench_import --rows 1000000"
    make manage ARGS="bench_import --rows 1000000 --kind enrich_contacts"   # then enrich those contacts

With `--kind enrich_contacts` the file enriches the contacts a contacts run with the same --run
stored (10 columns: e-mail and nine the enrichment fills; every third row's city is captured and
kept); run it twice to time a re-run (all unchanged).

Writes the file (streamed) under IMPORT_DIR, records the import as a real upload would, then runs the
import task in this process while a second thread reads the job row every 0.2 s, as the progress
page does, and notes the longest time between two progress updates. The contacts it creates keep
their addresses (bench-<run>-<n>@bench.example) so that a second run with the same --run is a
re-import (all unchanged).
"""

from __future__ import annotations

import os
import random
import resource
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.management.base import BaseCommand
from django.db import connection

from contacts import imports
from contacts.models import ImportJob

HEADER = ["Email", "First name", "Last name", "Phone", "Job title", "Country", "City", "Region", "Postal code",
          "Street address", "Lifecycle stage", "Lead score", "Estimated deal size", "Lifetime value",
          "Customer since", "Renewal date", "Language", "Gender", "Company", "Website"]  # fmt: skip
TITLES = ["VP Marketing", "Software Engineer", "Head of IT", "CFO", "Account Executive", "Product Manager", "Intern"]
# Each row its own phone number (national form, read in the row's country), as in a real file: the
# phone's parse is a fixed cost of every row, which repeated numbers would hide.
COUNTRIES = [
    ("Germany", lambda n: f"030 {1000000 + n % 8999999}"),
    ("USA", lambda n: f"(415) {200 + n % 800:03d}-{n % 10000:04d}"),
    ("UK", lambda n: f"020 7{n % 1000:03d} {n % 10000:04d}"),
    ("FR", lambda n: f"01 {n % 100:02d} {n // 100 % 100:02d} {n // 10000 % 100:02d} {n % 97:02d}"),
]
STAGES = ["subscriber", "lead", "mql", "sql", "opportunity", "customer"]
ENRICH_HEADER = ["Email", "Job title", "City", "Time zone", "Birth year", "Gender", "Education", "Income band",
                 "Interests", "Technologies"]  # fmt: skip


def write_file(path: Path, rows: int, run: str, seed: int = 7) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(";".join(HEADER) + "\n")
        for n in range(rows):
            country, phone_of = COUNTRIES[n % len(COUNTRIES)]
            company = n % 20_000
            fields = [
                f"bench-{run}-{n}@bench.example", "ada", f"Lovelace{n % 997}", phone_of(n), TITLES[n % len(TITLES)],
                country, "Berlin", "Berlin", f"{10000 + n % 89999}", f"Street {n % 300}", STAGES[n % len(STAGES)],
                str(rng.randint(0, 100)), f"{rng.randint(1, 900) * 100}", f"{rng.randint(0, 500) * 100}",
                "2023-05-01" if n % 6 == 5 else "", "2027-01-31" if n % 6 == 5 else "", "en", "",
                f"Company {company}", f"https://www.company-{company}.example/",
            ]  # fmt: skip
            out.write(";".join(fields) + "\n")


def write_enrichment_file(path: Path, rows: int, run: str) -> None:
    """A vendor's file for the contacts of `write_file(run)`: their city is captured (kept every third
    row, where the vendor's differs), the rest is new to them."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(",".join(ENRICH_HEADER) + "\n")
        for n in range(rows):
            fields = [
                f"bench-{run}-{n}@bench.example", TITLES[(n + 1) % len(TITLES)], "Munich" if n % 3 == 0 else "Berlin",
                "Europe/Berlin", str(1960 + n % 45), ["female", "male", "nonbinary"][n % 3], "master", "50k_100k",
                f"cloud; {['ai', 'security', 'data'][n % 3]}", "aws; kubernetes",
            ]  # fmt: skip
            out.write(",".join(fields) + "\n")


class Command(BaseCommand):
    help = "Benchmark a contact CSV import: rows/s, peak RSS and the longest gap between progress updates."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rows", type=int, default=100_000)
        parser.add_argument("--run", default="1", help="Names the contacts; the same run again re-imports them")
        parser.add_argument("--kind", choices=["contacts", "enrich_contacts"], default="contacts")

    def handle(self, *args, rows: int, run: str, kind: str, **options) -> None:
        directory = Path(settings.IMPORT_DIR)
        directory.mkdir(parents=True, exist_ok=True)
        source = directory / f"bench-{kind}-{run}-{rows}.csv"
        started = time.monotonic()
        (write_file if kind == "contacts" else write_enrichment_file)(source, rows, run)
        width = len(HEADER if kind == "contacts" else ENRICH_HEADER)
        self.stdout.write(f"file: {source.stat().st_size / 1e6:.0f} MB, {rows:,} rows x {width} columns, "
                          f"written in {time.monotonic() - started:.0f} s")  # fmt: skip
        with open(source, "rb") as handle:
            upload = File(handle, name=source.name)
            upload.size = source.stat().st_size
            job = imports.start_import(upload, kind=kind, user=None)
        imports.queue_import(job)  # outside a transaction: queued at once; this process runs it below
        gaps = _watch(job.pk)
        started, cpu_started, backend_started = time.monotonic(), time.process_time(), _backend_cpu()
        message = imports.run_import(job.pk)
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu_started
        backend = _backend_cpu()
        gaps.stop.set()
        gaps.thread.join()
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.stdout.write(message)
        self.stdout.write(f"import: {seconds:.1f} s, {rows / seconds:,.0f} rows/s")
        # CPU seconds, which a busy machine stretches far less than the wall clock: this process's,
        # and its PostgreSQL backend's (when the server runs on this machine).
        work = f"CPU: {cpu:.1f} s in Python"
        if backend is not None and backend_started is not None:
            work += f", {backend - backend_started:.1f} s in its PostgreSQL backend"
        self.stdout.write(work)
        self.stdout.write(f"peak RSS: {peak_mb:.0f} MB")
        self.stdout.write(f"longest gap between progress updates: {gaps.longest:.1f} s ({gaps.updates} updates seen)")
        self.stdout.write(f"database: {connection.vendor}; load average: {' '.join(f'{x:.1f}' for x in _load())}")
        source.unlink(missing_ok=True)


class _Gaps:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.longest = 0.0
        self.updates = 0
        self.thread: threading.Thread


def _watch(job_id: int) -> _Gaps:
    gaps = _Gaps()

    def poll() -> None:
        last_seen, last_change = None, None
        try:
            while not gaps.stop.is_set():
                stamp = ImportJob.objects.filter(pk=job_id).values_list("progress_at", flat=True).first()
                now = time.monotonic()
                if stamp != last_seen:
                    if last_change is not None:
                        gaps.longest = max(gaps.longest, now - last_change)
                    last_seen, last_change = stamp, now
                    gaps.updates += 1
                gaps.stop.wait(0.2)
        finally:
            connection.close()

    gaps.thread = threading.Thread(target=poll, daemon=True)
    gaps.thread.start()
    return gaps


def _backend_cpu() -> float | None:
    """CPU seconds so far of this connection's PostgreSQL backend; None when it cannot be read."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        # /proc/<pid>/stat: utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> tuple[float, float, float]:
    return os.getloadavg()
