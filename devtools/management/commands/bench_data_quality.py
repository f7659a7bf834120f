"""bench_data_quality: time the duplicate search, the criteria coverage report and the list hygiene
check over the contacts in the database, with the statements each ran and the peak RSS.

    make manage ARGS="seed_demo --contacts 100000 --seed 1"
    make manage ARGS="bench_data_quality --plant 1000"
    DATABASE_URL=postgres://... make manage ARGS="bench_data_quality --generate 1000000 --plant 10000"

`--generate N` (PostgreSQL) first writes N contacts set-based, ten to a company with no name
shared there (generate_series: a phone for 30%, 2% Gmail addresses, some role, disposable and
mistyped addresses, half known for over a year, 40% with a recent e-mail open), for a database
without contacts.

`--plant N` first adds N contacts that duplicate existing ones (a +tag of the same mailbox at the same
company, half with the first name mistyped), so that the search has pairs to find; their addresses
carry +dqbench and a later run replaces them.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from contacts import writes
from contacts.duplicates import find_duplicates
from contacts.hygiene import check_hygiene
from contacts.models import Activity, Company, Contact
from devtools.generate import insert_series, settle, sql_array
from devtools.measure import peak_rss_mb
from segments.coverage import Report, coverage_report

PLANTED = "+dqbench"


class Command(BaseCommand):
    help = "Benchmark duplicate candidates, the criteria coverage report and the hygiene check."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--plant", type=int, default=0, help="Duplicates to add before measuring")
        parser.add_argument("--generate", type=int, default=0, help="PostgreSQL: contacts to write first")

    def handle(self, *args, plant: int, generate: int, **options) -> None:
        if generate:
            clock = time.monotonic()
            _generate(generate)
            self.stdout.write(f"generated {generate:,} contacts in {time.monotonic() - clock:.0f} s")
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
            summary = f"{len(result.criteria)} criteria" if isinstance(result, Report) else str(result)
            self.stdout.write(f"{name}: {seconds:.2f} s, {len(queries)} statements; {summary}")
        self.stdout.write(f"peak RSS {peak_rss_mb():.0f} MB")

    def _plant(self, count: int) -> None:
        writes.delete(Contact.objects.filter(email__contains=PLANTED))
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
                    "email": original["email"].replace("@", f"{PLANTED}{n}@", 1),
                    "first_name": first[:-1] + first[-1] * 2 if n % 2 else first,
                    "last_name": original["last_name"],
                    "company_domain": original["company__domain"],
                }
            )
        for start in range(0, len(rows), 5000):
            writes.upsert_contacts(rows[start : start + 5000])
        self.stdout.write(f"planted {len(rows):,} duplicates (+tag of the same mailbox, half with a first-name typo)")


FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "John",
    "Jon",
    "Karen",
    "Li",
    "Wei",
    "Maria",
    "Mario",
    "Olu",
    "Ngozi",
    "Sven",
    "Anna",
    "Hannah",
    "Yuki",
    "Ravi",
    "Priya",
    "Omar",
    "Leila",
]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Smith", "Meier", "Meyer",
        "Wei", "Rossi", "Adeyemi", "Okafor", "Larsen", "Novak", "Schmidt", "Tanaka", "Patel", "Haddad"]  # fmt: skip


def _generate(count: int) -> None:
    """Contacts and companies in a few INSERT ... SELECT statements (PostgreSQL only; % is %% in them)."""
    if connection.vendor != "postgresql":
        raise CommandError("--generate writes with PostgreSQL's generate_series; use a PostgreSQL DATABASE_URL.")
    companies = max(1, count // 10)
    first, last = sql_array(FIRST), sql_array(LAST)
    with transaction.atomic():
        insert_series(
            Company,
            {"name": "'Company ' || g", "domain": "'dq' || g || '.example'",
             "industry": "(ARRAY['software', 'retail', ''])[1 + g %% 3]", "employee_count": "10 + g %% 5000"},
            companies,
        )  # fmt: skip
        # One statement takes consecutive ids: company g is start + g.
        start = Company.objects.get(domain="dq1.example").pk - 1
        domain = (
            "CASE WHEN g %% 97 = 0 THEN 'role' || g || '.example' "
            "WHEN g %% 50 = 0 THEN 'gmail.com' WHEN g %% 199 = 0 THEN 'mailinator.com' "
            f"WHEN g %% 211 = 0 THEN 'gmial.com' ELSE 'dq' || (1 + ((g - 1) / 10) %% {companies}) || '.example' END"
        )
        local = f"CASE WHEN g %% 97 = 0 THEN 'info' ELSE lower(({first})[1 + g %% {len(FIRST)}]) || '.' || g END"
        insert_series(
            Contact,
            {
                "email": f"{local} || '@' || {domain}",
                "first_name": f"({first})[1 + g %% {len(FIRST)}]",
                # ten people a company, consecutive g: no two share a first or a last name there
                "last_name": f"({last})[1 + (g * 7) %% {len(LAST)}]",
                "phone": "CASE WHEN g %% 10 < 3 THEN '+4930' || lpad(g::text, 8, '0') ELSE '' END",
                "company_id": f"{start} + 1 + ((g - 1) / 10) %% {companies}",
                "job_function": "(ARRAY['engineering', 'sales', 'it', ''])[1 + g %% 4]",
                "created_at": "now() - make_interval(days => (g %% 730))",
            },
            count,
        )
        _recent_opens()
    settle(Company, Contact, Activity)


def _recent_opens() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Activity._meta.db_table} (contact_id, kind, occurred_at, topic, product, url, campaign, "
            "created_at) SELECT id, 'email_open', now() - interval '3 days', '', '', '', '', now() "
            f"FROM {Contact._meta.db_table} WHERE id % 5 < 2"
        )
