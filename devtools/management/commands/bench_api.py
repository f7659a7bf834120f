"""python manage.py bench_api: time the integration API from a client process against a real server.

Builds a throw-away database (the test database of the configured one, migrated from scratch),
seeds contacts, starts a single-threaded WSGI server on it in a child process with DEBUG off (like
one sync worker of a production server: it keeps its database connection between requests, which
`runserver`, starting a thread and so a connection per request, does not), then times
  - activities/bulk/: N requests of 10,000 activities (target >= 10,000 activities/s),
  - contacts/bulk-upsert/: N requests of 10,000 contacts, half new and half updates (>= 5,000/s),
  - personalization/: p95 of single-contact requests (< 20 ms), when the endpoint exists,
and prints the figures. Run it against PostgreSQL: DATABASE_URL=postgres://... manage.py bench_api
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import quote

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.utils import timezone

from api.keys import create_api_key
from api.models import Scope
from contacts.ingest import MAX_ROWS
from contacts.models import ActivityKind, Contact
from contacts.table_statistics import analyze

KINDS = ActivityKind.values


# One WSGI worker in one thread: the shape of a production sync worker, without a new dependency.
SERVE = """
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from crmseg_site.wsgi import application


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


make_server("127.0.0.1", int(sys.argv[1]), application, handler_class=QuietHandler).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = f"{db['USER']}:{db['PASSWORD']}@" if db["PASSWORD"] else f"{db['USER']}@"
    return f"postgres://{auth}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Client:
    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")


class Command(BaseCommand):
    help = "Benchmark bulk ingest and personalization through a real HTTP server; prints throughput and p95."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--requests", type=int, default=10, help="Bulk requests per endpoint (default 10)")
        parser.add_argument("--rows", type=int, default=MAX_ROWS, help=f"Rows per bulk request (max {MAX_ROWS})")
        parser.add_argument("--contacts", type=int, default=10_000, help="Contacts seeded before the run")
        parser.add_argument("--lookups", type=int, default=500, help="Personalization requests timed")

    def handle(self, *args, requests: int, rows: int, contacts: int, lookups: int, **options) -> None:
        vendor = connection.vendor
        if vendor != "postgresql":
            self.stderr.write(f"Note: running on {vendor}; the targets are stated for PostgreSQL.")
        old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        server = None
        try:
            ids = self._seed(contacts)
            _key, plain = create_api_key(name="bench", scopes=list(Scope.values))
            port = _free_port()
            server = self._start_server(port)
            client = Client(f"http://127.0.0.1:{port}", plain)
            self._wait_until_up(client, server)
            server_name = "one single-threaded WSGI worker (DEBUG off)"
            self.stdout.write(f"database: {vendor}, server: {server_name} on 127.0.0.1:{port}")
            self._bench_activities(client, ids, requests=requests, rows=rows)
            self._bench_contacts(client, requests=requests, rows=rows)
            self._bench_personalization(client, ids, lookups=lookups)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
            connection.creation.destroy_test_db(old_name, verbosity=0)

    def _seed(self, count: int) -> list[int]:
        now = timezone.now()
        Contact.objects.bulk_create(
            [
                Contact(email=f"seed{i}@bench.example", first_name="Seed", last_name=str(i), lifecycle_changed_at=now)
                for i in range(count)
            ],
            batch_size=5000,
        )
        analyze(Contact)
        return list(Contact.objects.values_list("id", flat=True))

    def _start_server(self, port: int) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "API_THROTTLE_RATE": "",
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-c", SERVE, str(port)]
        return subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _wait_until_up(self, client: Client, server: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError("the benchmark server exited during start-up")
            try:
                if client.call("GET", "/api/v1/contacts/?page_size=1")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the benchmark server did not answer within 60 s")

    def _timed_bulk(self, client: Client, path: str, batches: list[list[dict]]) -> tuple[float, list[float], dict]:
        durations: list[float] = []
        last: dict = {}
        for batch in batches:
            body = {"rows": batch}
            started = time.perf_counter()
            status, last = client.call("POST", path, body)
            durations.append(time.perf_counter() - started)
            if status != 200 or last.get("failed"):
                raise RuntimeError(f"{path} answered {status}: {str(last)[:500]}")
        return sum(durations), durations, last

    def _report(self, label: str, total_rows: int, total: float, durations: list[float], target: str) -> None:
        per_request = ", ".join(f"{d * 1000:.0f}" for d in durations)
        self.stdout.write(
            f"{label}: {total_rows} rows in {total:.2f} s = {total_rows / total:,.0f} rows/s ({target});"
            f" per request ms: {per_request}"
        )

    def _bench_activities(self, client: Client, ids: list[int], *, requests: int, rows: int) -> None:
        now = timezone.now()
        batches = [
            [
                {
                    "external_id": f"bench-{r}-{i}",
                    "contact": ids[(r * rows + i) % len(ids)],
                    "kind": KINDS[i % len(KINDS)],
                    "occurred_at": (now - timedelta(minutes=i)).isoformat(),
                    "topic": "cloud-migration" if i % 3 else "security",
                    "url": "https://example.com/pricing",
                    "value": i % 50,
                }
                for i in range(rows)
            ]
            for r in range(requests)
        ]
        total, durations, _ = self._timed_bulk(client, "/api/v1/activities/bulk/", batches)
        self._report("activities/bulk/", requests * rows, total, durations, "target >= 10,000/s")
        total, durations, last = self._timed_bulk(client, "/api/v1/activities/bulk/", batches[:1])
        self.stdout.write(
            f"activities/bulk/ repeated delivery: {last['duplicates']} duplicates, {last['created']} created"
            f" in {total * 1000:.0f} ms"
        )

    def _bench_contacts(self, client: Client, *, requests: int, rows: int) -> None:
        def row(n: int, r: int) -> dict:
            return {
                "email": f"bulk{n}@bench.example",
                "first_name": "Bulk",
                "last_name": f"Contact {n}",
                "job_title": "Engineer",
                "country": "DE",
                "lifecycle_stage": ["lead", "mql", "sql"][(n + r) % 3],
                "lead_score": (n * 7 + r) % 100,
                "company_domain": f"company{n % 500}.example",
            }

        new = (requests + 1) // 2
        batches = [[row(r * rows + i, r) for i in range(rows)] for r in range(new)]
        batches += [[row(r * rows + i, r + 1) for i in range(rows)] for r in range(requests - new)]
        total, durations, _ = self._timed_bulk(client, "/api/v1/contacts/bulk-upsert/", batches)
        self._report(
            f"contacts/bulk-upsert/ ({new} new, {requests - new} update batches)",
            requests * rows,
            total,
            durations,
            "target >= 5,000/s",
        )

    def _bench_personalization(self, client: Client, ids: list[int], *, lookups: int) -> None:
        status, _ = client.call("GET", f"/api/v1/personalization/?contact={ids[0]}")
        if status == 404:
            self.stdout.write("personalization/: endpoint not available in this build; not measured")
            return
        durations = []
        for i in range(lookups):
            path = (
                f"/api/v1/personalization/?contact={ids[i % len(ids)]}"
                if i % 2
                else f"/api/v1/personalization/?email={quote(f'seed{i % len(ids)}@bench.example')}"
            )
            started = time.perf_counter()
            status, body = client.call("GET", path)
            durations.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"personalization answered {status}: {str(body)[:300]}")
        p95 = statistics.quantiles(durations, n=20)[-1]
        self.stdout.write(
            f"personalization/: {lookups} requests, p50 {statistics.median(durations):.1f} ms,"
            f" p95 {p95:.1f} ms (target < 20 ms)"
        )
