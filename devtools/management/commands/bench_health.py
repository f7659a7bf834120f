"""bench_health: time governance's daily health job over N segments on the stored contacts.

    DATABASE_URL=postgres://.../crmseg_bench_health python manage.py bench_health --segments 1000

Tops the database up to N segments that are not archived with static lists (`bench-health-<n>`)
whose members are pseudo-random subsets of the contacts, sizes log-uniform from `--min-size` to
`--max-size`; every tenth list is a 95% copy of the list before it, so there are near-duplicates
to find. The lists are written set-based and kept, so a second run times the job alone. Then it
times `check_health()` `--repeat` times and prints the median, the flags it raised by kind, the
close-sized pairs the near-duplicate check had to consider and this process's peak RSS; then the
review reminders' daily run once (it records what it sends, so a second run sends nothing).
Writes: PostgreSQL databases with "bench" in their name only.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections import Counter

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import Max, Min

from contacts.models import Contact
from devtools.measure import peak_rss_mb
from segments.governance.health import candidate_pairs, check_health
from segments.governance.tasks import review_reminders
from segments.models import Membership, Segment, SegmentKind, SegmentStatus

PREFIX = "bench-health-"
MODULUS = 2_147_483_647  # a prime: g * MODULUS + b mod span visits every id of a smaller span once


class Command(BaseCommand):
    help = "Median time of the governance health job over N segments (writes: bench databases only)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--segments", type=int, default=1000)
        parser.add_argument("--min-size", type=int, default=50)
        parser.add_argument("--max-size", type=int, default=200_000)
        parser.add_argument("--repeat", type=int, default=3)

    def handle(self, *args, **options) -> None:
        name = str(settings.DATABASES["default"]["NAME"])
        if connection.vendor != "postgresql" or "bench" not in name:
            raise CommandError(f"Run this on a PostgreSQL database with 'bench' in its name, not {name!r}: it writes.")
        contacts = Contact.objects.count()
        if not contacts:
            raise CommandError("No contacts: build a bench database first (bench_segments).")
        started = time.perf_counter()
        added = self.top_up(options["segments"], contacts, options["min_size"], options["max_size"])
        if added:
            self.stdout.write(f"added {added} static lists in {time.perf_counter() - started:.1f} s")
        segments = list(Segment.objects.exclude(status=SegmentStatus.ARCHIVED))
        threshold = settings.GOVERNANCE_DUPLICATE_PERCENT / 100
        pairs = candidate_pairs({s.pk: s.size for s in segments}, threshold=threshold)
        self.stdout.write(
            f"contacts={contacts:,} segments={len(segments):,} memberships={sum(s.size for s in segments):,} "
            f"close-sized pairs={len(pairs):,} (threshold {threshold:.2f})"
        )
        times, flags = [], {}
        for _ in range(options["repeat"]):
            started = time.perf_counter()
            flags = check_health()
            times.append(time.perf_counter() - started)
        kinds = Counter(flag.code for found in flags.values() for flag in found)
        self.stdout.write(
            f"check_health: median {statistics.median(times):.1f} s ({', '.join(f'{t:.1f}' for t in times)}), "
            f"flags {dict(sorted(kinds.items()))}, peak RSS {peak_rss_mb():.0f} MB"
        )
        started = time.perf_counter()
        sent = review_reminders()
        self.stdout.write(f"review_reminders: {time.perf_counter() - started:.1f} s, {sent}")

    def top_up(self, wanted: int, contacts: int, smallest: int, largest: int) -> int:
        have = Segment.objects.exclude(status=SegmentStatus.ARCHIVED).count()
        start = Segment.objects.filter(slug__startswith=PREFIX).count()
        rng = random.Random(23 + start)
        table, contact_table = Membership._meta.db_table, Contact._meta.db_table
        added, previous = 0, 0
        low, high = Contact.objects.aggregate(low=Min("pk"), high=Max("pk")).values()
        span = high - low + 1
        for n in range(start, start + max(wanted - have, 0)):
            with transaction.atomic():
                with connection.cursor() as cursor:
                    # Made-up rows, rebuilt if lost: no need to wait for the disk at each commit.
                    cursor.execute("SET LOCAL synchronous_commit = off")
                segment = Segment.objects.create(
                    name=f"Bench health {n}", slug=f"{PREFIX}{n}", kind=SegmentKind.STATIC, status=SegmentStatus.ACTIVE
                )
                with connection.cursor() as cursor:
                    if n % 10 == 9 and added:
                        cursor.execute(
                            f"""INSERT INTO {table} (segment_id, contact_id, joined_at)
                            SELECT %s, contact_id, now() FROM {table}
                            WHERE segment_id = %s AND contact_id %% 20 <> 0 ORDER BY contact_id""",
                            [segment.pk, previous],
                        )
                    else:
                        # `size` ids picked from the id range by a*g+b mod span (a prime above any
                        # span: no id twice), joined to the contacts that exist: work grows with the
                        # list, not with the contacts.
                        size = min(contacts, round(math.exp(rng.uniform(math.log(smallest), math.log(largest)))))
                        cursor.execute(
                            f"""INSERT INTO {table} (segment_id, contact_id, joined_at)
                            SELECT %s, c.id, now() FROM generate_series(1, %s) g
                            JOIN {contact_table} c ON c.id = %s + (g::bigint * {MODULUS} + %s) %% %s
                            ORDER BY c.id""",
                            [segment.pk, size, low, rng.randrange(span), span],
                        )
                    size = cursor.rowcount
                Segment.objects.filter(pk=segment.pk).update(size=size)
            previous = segment.pk
            added += 1
        if added:
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {table}")
        return added
