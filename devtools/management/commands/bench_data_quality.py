"""bench_data_quality: time the duplicate search, the criteria coverage report and the list hygiene
check over the contacts in the database, with the statements each ran and the peak RSS.

    make manage ARGS="seed_demo --contacts 100000 --seed 1"
    make manage ARGS="bench_data_quality --plant 1000"

`--plant N` first adds N contacts that duplicate existing ones (a +tag of the same mailbox, or the
same name with the first name mistyped at the same company), so that the search has pairs to find;
their addresses end in @dq-bench.example and a later run replaces them.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts import writes
from contacts.duplicates import find_duplicates
from contacts.hygiene import check_hygiene
from contacts.models import Contact
from devtools.measure import peak_rss_mb
from segments.coverage import coverage_report

PLANTED = "@dq-bench.example"


class Command(BaseCommand):
    help = "Benchmark duplicate candidates, the criteria coverage report and the hygiene check."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--plant", type=int, default=0, help="Duplicates to add before measuring")

    def handle(self, *args, plant: int, **options) -> None:
        if plant:
            self._plant(plant)
        contacts = Contact.objects.count()
        self.stdout.write(f"{contacts:,} contacts ({connection.vendor})")
        for name, work in [
            ("duplicate candidates", find_duplicates),
            ("coverage report", coverage_report),
            ("hygiene check (first)", check_hygiene),
            ("hygiene check (again)", check_hygiene),
        ]:
            with CaptureQueriesContext(connection) as queries:
                clock = time.monotonic()
                result = work()
                seconds = time.monotonic() - clock
            summary = f"{len(result.criteria)} criteria" if name == "coverage report" else str(result)
            self.stdout.write(f"{name}: {seconds:.2f} s, {len(queries)} statements; {summary}")
        self.stdout.write(f"peak RSS {peak_rss_mb():.0f} MB")

    def _plant(self, count: int) -> None:
        writes.delete(Contact.objects.filter(email__endswith=PLANTED))
        originals = list(
            Contact.objects.exclude(first_name="")
            .exclude(company=None)
            .order_by("pk")[:count]
            .values("email", "first_name", "last_name", "company__domain")
        )
        rows = []
        for n, original in enumerate(originals):
            first = original["first_name"]
            rows.append(
                {
                    "email": f"{original['email'].split('@')[0]}.{n}{PLANTED}",
                    "first_name": first[:-1] + first[-1] * 2 if n % 2 else first,
                    "last_name": original["last_name"],
                    "company_domain": original["company__domain"],
                }
            )
        for start in range(0, len(rows), 5000):
            writes.upsert_contacts(rows[start : start + 5000])
        self.stdout.write(f"planted {len(rows):,} duplicates (same company and last name, half with a first-name typo)")
