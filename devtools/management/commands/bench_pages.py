"""Time the product pages against the data in the configured database and print the figures.

    DATABASE_URL=postgres://.../crmseg_bench python manage.py bench_pages --repeat 5

Requests go through Django's test client in this process, signed in as a throwaway staff user and
a throwaway Sales rep created inside a transaction that is rolled back at the end: the database is
left as it was. Each page is fetched once to warm caches, then `--repeat` times; the median wall
time and the number of SQL queries are printed.
"""

import json
import statistics
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from contacts.models import Contact
from segments.models import Membership, Segment


class Command(BaseCommand):
    help = "Median time and query count of the contact and segment pages on the current data."

    def add_arguments(self, parser):
        parser.add_argument("--repeat", type=int, default=5)

    def handle(self, *args, repeat: int, **options):
        with transaction.atomic():
            self.run(repeat)
            transaction.set_rollback(True)

    def run(self, repeat: int) -> None:
        User = get_user_model()
        ops = User.objects.create_user("bench-pages-ops", password="x", is_staff=True, is_superuser=True)
        rep = User.objects.create_user("bench-pages-rep", password="x")
        rep.groups.add(Group.objects.get(name="Sales"))
        owner_id = Contact.objects.filter(owner__isnull=False).values_list("owner_id", flat=True).first()
        if owner_id:
            rep = User.objects.get(pk=owner_id)
            rep.groups.add(Group.objects.get(name="Sales"))
        contact_id = Membership.objects.order_by("-id").values_list("contact_id", flat=True).first()
        contact_id = contact_id or Contact.objects.values_list("pk", flat=True).first()
        segment = Segment.objects.order_by("-size").first()
        last_name, first_name, email = Contact.objects.filter(pk=contact_id or 0).values_list(
            "last_name", "first_name", "email"
        ).first() or ("smith", "ada", "smith@example.com")
        self.stdout.write(
            f"contacts≈{self.estimate('contacts_contact'):,} activities≈{self.estimate('contacts_activity'):,} "
            f"memberships≈{self.estimate('segments_membership'):,} on {connection.vendor}"
        )
        host = next((h.lstrip(".") for h in settings.ALLOWED_HOSTS if h != "*"), "localhost")
        sales, staff = Client(SERVER_NAME=host), Client(SERVER_NAME=host)
        sales.force_login(rep)
        staff.force_login(ops)
        search = reverse("contacts-search")
        pages = [
            ("contact search, my contacts", sales, search, {}),
            (f"contact search, anyone, {last_name!r}", sales, search, {"owner": "any", "q": last_name}),
            (f"contact search, anyone, {last_name[:3]!r}", sales, search, {"owner": "any", "q": last_name[:3]}),
            (f"contact search, anyone, {email[:2]!r}", sales, search, {"owner": "any", "q": email[:2]}),
            (f"contact search, anyone, {first_name!r}", sales, search, {"owner": "any", "q": first_name}),
            ("contact search, anyone, 'zz' (no match)", sales, search, {"owner": "any", "q": "zz"}),
            ("contact search, anyone, page 40", sales, search, {"owner": "any", "page": 40}),
            ("contact page", sales, reverse("contacts-detail", args=[contact_id]), {}),
            ("segments overview", staff, reverse("segments-overview"), {}),
        ]
        if segment:
            pages += [
                (f"segment page ({segment.size:,} members)", staff, reverse("segments-detail", args=[segment.pk]), {}),
                (
                    f"segment members search ({segment.slug})",
                    staff,
                    reverse("segments-detail", args=[segment.pk]),
                    {"q": "a"},
                ),
            ]
        for label, client, url, params in pages:
            self.measure(label, lambda c=client, u=url, p=params: c.get(u, p), repeat)
        rule = {
            "all": [
                {"field": "lead_score", "op": "gte", "value": 50},
                {"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]},
            ]
        }
        body = json.dumps({"rule": rule})
        self.measure(
            "rule preview (count + 10 samples)",
            lambda: staff.post(reverse("segments-rule-preview"), body, content_type="application/json"),
            repeat,
        )

    def estimate(self, table: str) -> int:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])
            else:
                cursor.execute(f"SELECT COUNT(*) FROM {table}")
            row = cursor.fetchone()
        return max(row[0], 0) if row else 0

    def measure(self, label: str, fetch, repeat: int) -> None:
        response = fetch()
        if response.status_code != 200:
            self.stdout.write(f"{label:45} HTTP {response.status_code}")
            return
        times = []
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                fetch()
                times.append((time.perf_counter() - started) * 1000)
        self.stdout.write(
            f"{label:45} median {statistics.median(times):7.1f} ms  max {max(times):7.1f} ms  {len(queries)} queries"
        )
