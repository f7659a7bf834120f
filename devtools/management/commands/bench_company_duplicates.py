"""bench_company_duplicates: time the duplicate company search over N companies, with the statements
it ran, the peak RSS and how many planted duplicates it found.

    make manage ARGS="bench_company_duplicates --companies 100000"
    DATABASE_URL=postgres://... make manage ARGS="bench_company_duplicates --companies 100000"

Writes N companies (through contacts.writes, industry "cdbench", replaced by the next run) with
Faker's company names ("Garcia, Lee and Smith", "Johnson LLC": surnames make name blocks of
realistic size) and domains made from them under .com, .de, .co.uk, .fr and .io, of which 2% are
planted duplicates of another: a subdomain of its domain (shop.acme.co.uk), its domain's name
under another suffix with another legal form, or its name mistyped under an unrelated domain.
Then the search runs twice: first computing every company's keys, then with nothing changed.
"""

from __future__ import annotations

import random
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from faker import Faker

from contacts import writes
from contacts.company_duplicates import find_company_duplicates, name_key
from contacts.models import Company, CompanyDuplicateCandidate
from devtools.measure import peak_rss_mb

BENCH = "cdbench"
SUFFIXES = ["com", "de", "co.uk", "fr", "io"]
LEGAL = ["Inc", "Ltd", "GmbH", "LLC", "S.A.", "B.V."]
PLANTED_SHARE = 50  # one company in 50 is a planted duplicate
WRITE_BATCH = 5000


class Command(BaseCommand):
    help = "Benchmark the duplicate company search over N generated companies."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--companies", type=int, default=10000, help="Companies to write first")
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, companies: int, seed: int, **options) -> None:
        clock = time.monotonic()
        planted = _generate(companies, seed)
        total = Company.objects.count()
        self.stdout.write(
            f"wrote {companies:,} companies ({len(planted):,} planted duplicates) in {time.monotonic() - clock:.0f} s; "
            f"{total:,} companies ({connection.vendor})"
        )
        for run in ("first: every key computed", "again: nothing changed"):
            with CaptureQueriesContext(connection) as queries:
                clock = time.monotonic()
                found = find_company_duplicates()
                seconds = time.monotonic() - clock
            self.stdout.write(f"duplicate companies ({run}): {seconds:.2f} s, {len(queries)} statements; {found}")
        self.stdout.write(f"planted duplicates found: {_found(planted):,} of {len(planted):,}")
        self.stdout.write(f"peak RSS {peak_rss_mb():.0f} MB")


def _generate(count: int, seed: int) -> list[tuple[str, str]]:
    """Write `count` companies; the planted pairs as (domain, domain)."""
    writes.delete(Company.objects.filter(industry=BENCH))
    fake, rng = Faker("en_US"), random.Random(seed)
    fake.seed_instance(seed)
    rows: list[dict] = []
    taken: set[str] = set()
    planted: list[tuple[str, str]] = []

    def add(name: str, domain: str) -> bool:
        if domain in taken:
            return False
        taken.add(domain)
        rows.append({"name": name, "domain": domain, "industry": BENCH})
        return True

    while len(rows) < count:
        if len(rows) > 10 and len(rows) % PLANTED_SHARE == 0:
            original = rng.choice(rows)
            name, domain = _twin(original["name"], original["domain"], rng)
            if add(name, domain):
                planted.append((original["domain"], domain))
            continue
        name = fake.company()
        add(name, f"{name_key(name).replace(' and ', '-').replace(' ', '')}.{rng.choice(SUFFIXES)}")
    for start in range(0, len(rows), WRITE_BATCH):
        result = writes.upsert_companies(rows[start : start + WRITE_BATCH])
        if result.failed:
            raise CommandError(f"generated companies refused: {list(result.failed.items())[:3]}")
    return planted


def _twin(name: str, domain: str, rng: random.Random) -> tuple[str, str]:
    """Another record of the same company: one of the three kinds the module's docstring lists."""
    label, _, suffix = domain.partition(".")
    kind = rng.randrange(3)
    if kind == 0:
        return f"{name} {rng.choice(['Shop', 'Europe', 'Labs'])}", f"{rng.choice(['shop', 'eu', 'labs'])}.{domain}"
    if kind == 1:
        other = rng.choice([s for s in SUFFIXES if s != suffix])
        return f"{name_key(name).title()} {rng.choice(LEGAL)}", f"{label}.{other}"
    at = rng.randrange(1, max(2, len(name) - 2))
    typo = name[:at] + name[at + 1] + name[at] + name[at + 2 :] if len(name) > 3 else name + "x"
    return typo, f"{label}-group.{rng.choice(SUFFIXES)}"


def _found(planted: list[tuple[str, str]]) -> int:
    ids = dict(Company.objects.filter(industry=BENCH).values_list("domain", "pk"))
    pairs = {tuple(sorted((ids[a], ids[b]))) for a, b in planted}
    stored = set(CompanyDuplicateCandidate.objects.values_list("company_a_id", "company_b_id"))
    return len(pairs & stored)
