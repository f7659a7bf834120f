"""Benchmark: export 100k and then 1M segment members to a hashed Meta file on PostgreSQL.

Builds its data set-based with generate_series in a database of its own (the database name must
contain "bench": the command empties the contact, segment and activation tables first), then runs
the real export pipeline and prints rows per second and the process's peak RSS for each size.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmseg_benchx python manage.py bench_export
"""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from activation.exports import execute_run, start_run
from activation.models import Activation, Destination, DestinationKind, RunStatus
from contacts.models import Contact
from contacts.table_statistics import analyze
from devtools.generate import insert_series
from devtools.measure import peak_rss_mb, reset_peak_rss, rss_mb
from segments.models import Membership, Segment, SegmentKind

# SQL for the columns the benchmark cares about; every other column gets its model default.
CONTACT_COLUMNS = {
    "email": "'bench' || g || '@Example.com'",
    "first_name": "'Ada'",
    "last_name": "'Lovelace-' || g",
    "phone": "'(415) ' || (200 + mod(g, 700)) || '-' || lpad(mod(g, 10000)::text, 4, '0')",
    "country": "'US'",
    "region": "'California'",
    "city": "'San Francisco'",
    "postal_code": "'94105-' || lpad(mod(g, 10000)::text, 4, '0')",
}


class Command(BaseCommand):
    help = "Export 100k and 1M members to a hashed Meta file on PostgreSQL; print rows/s and peak RSS."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--members", type=int, default=1_000_000, help="Largest export size")
        parser.add_argument("--first", type=int, default=100_000, help="Smaller export size, measured first")

    def handle(self, *args, members: int, first: int, **options) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("bench_export needs PostgreSQL (DATABASE_URL=postgres://.../crmseg_benchx)")
        if "bench" not in connection.settings_dict["NAME"]:
            raise CommandError(
                f"Database {connection.settings_dict['NAME']!r} does not look like a benchmark database "
                "(its name must contain 'bench'); bench_export empties its tables."
            )
        call_command("migrate", verbosity=0)
        self._reset()
        started = time.perf_counter()
        self._insert_contacts(members)
        small = self._segment("bench-small", limit=first)
        large = self._segment("bench-large", limit=members)
        self.stdout.write(f"set-up: {members:,} contacts and memberships in {time.perf_counter() - started:.1f}s")
        destination = Destination.objects.create(name="bench meta", kind=DestinationKind.META, min_audience_size=0)
        for segment, size in ((small, first), (large, members)):
            self._measure(Activation.objects.create(name=f"bench {size}", segment=segment, destination=destination))

    def _reset(self) -> None:
        tables = [model._meta.db_table for model in (Activation, Destination, Membership, Segment, Contact)]
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")

    def _insert_contacts(self, count: int) -> None:
        insert_series(Contact, CONTACT_COLUMNS, count)
        analyze(Contact)

    def _segment(self, slug: str, *, limit: int) -> Segment:
        segment = Segment.objects.create(name=slug, slug=slug, kind=SegmentKind.STATIC, rule=None)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {Membership._meta.db_table} (segment_id, contact_id, joined_at) "
                f"SELECT %s, id, now() FROM {Contact._meta.db_table} ORDER BY id LIMIT %s",
                [segment.pk, limit],
            )
            cursor.execute(f"ANALYZE {Membership._meta.db_table}")
        return segment

    def _measure(self, activation: Activation) -> None:
        reset_peak_rss()
        before = rss_mb()
        run = start_run(activation)
        started = time.perf_counter()
        run = execute_run(run.pk)
        elapsed = time.perf_counter() - started
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"run {run.pk} failed: {run.error}")
        size_mb = (run.file_size or 0) / 1e6
        self.stdout.write(
            f"{run.exported_count:>9,} rows  {elapsed:6.1f}s  {run.exported_count / elapsed:>8,.0f} rows/s  "
            f"RSS before {before:.0f} MB, peak {peak_rss_mb():.0f} MB  "
            f"file {size_mb:.0f} MB  {Path(settings.MEDIA_ROOT) / run.file_path}"
        )
