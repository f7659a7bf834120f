"""Load against a running server (bench_load, bench_freshness): clients in threads, per-kind
latencies, the task queue's depth while it runs, and how long the workers take to catch up.

The commands run beside the server on its database and with its broker settings (DATABASE_URL,
REDIS_URL, Q_CLUSTER_NAME), which they need to make keys, a user and probes, and to read the queue.
"""

from __future__ import annotations

import http.cookiejar
import json
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone
from django_q.brokers import get_broker

from api.keys import create_api_key
from api.models import Scope
from contacts import catch_up
from contacts.models import CatchUpState, Contact, PendingChange

KINDS = ("api", "page", "personalization", "ingest")
INGEST_KINDS = ("page_view", "email_open", "email_click", "site_visit", "content_download")
BENCH_USER = "bench-load"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def summary_ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 50) * 1000:.0f} ms, p95 {percentile(values, 95) * 1000:.0f} ms"


def backlog() -> tuple[int, int]:
    """Tasks in the broker's queue and contacts waiting for a catch-up."""
    return get_broker().queue_size(), PendingChange.objects.count()


def caught_up() -> bool:
    queued, waiting = backlog()
    running = CatchUpState.objects.filter(running_since__isnull=False).exists()
    return queued == 0 and waiting == 0 and not running


def catch_up_note() -> str:
    """The catch-up task in a few words: which worker runs it since when, and its failures in a row."""
    held = catch_up.state()
    note = "not running"
    if held.running_since is not None:
        since = timezone.localtime(held.running_since)
        note = f"running since {since:%H:%M:%S} on {held.worker or 'an unknown worker'}"
    if held.failures:
        note += f"; failed {held.failures} in a row, last: {held.last_error}"
    return note


class Session:
    """One client's HTTP session: an API key, and a signed-in page session when asked."""

    def __init__(self, base: str, key: str, *, timeout: float = 30, cookies: http.cookiejar.CookieJar | None = None):
        self.base = base.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.cookies = cookies if cookies is not None else http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def sign_in(self, username: str, password: str) -> None:
        page = self.opener.open(self.base + "/login/", timeout=self.timeout).read().decode()
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if found is None:
            raise RuntimeError(f"{self.base}/login/ shows no CSRF token")
        token = found.group(1)
        body = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
        request = urllib.request.Request(
            self.base + "/login/", data=body.encode(), headers={"Referer": self.base + "/login/"}
        )
        landed = self.opener.open(request, timeout=self.timeout)
        if "/login/" in landed.geturl():
            raise RuntimeError(f"{username} could not sign in at {self.base}/login/")

    def call(self, method: str, path: str, body: object = None, *, api: bool = True) -> int:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"} if api else {}
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            return error.code


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rows: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, outcome: str | None, rows: int = 0) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            if outcome:
                self.errors[kind].append(outcome)
            self.rows += rows


def prepare(clients: int) -> tuple[list[str], str, list[int]]:
    """API keys (one per client, as separate integrations), the bench user's password, contact ids."""
    scopes: list[str] = [Scope.CONTACTS_READ, Scope.ACTIVITIES_WRITE, Scope.PERSONALIZATION_READ]
    expires = timezone.now() + timedelta(hours=2)
    keys = [create_api_key(name=f"bench-load {n}", scopes=scopes, expires_at=expires)[1] for n in range(clients)]
    password = uuid.uuid4().hex
    user = get_user_model().objects.filter(username=BENCH_USER).first()
    if user is None:
        user = get_user_model().objects.create_superuser(BENCH_USER, f"{BENCH_USER}@example.com", password)
    user.set_password(password)
    user.save(update_fields=["password"])
    ids = list(Contact.objects.order_by("?").values_list("pk", flat=True)[:5000])
    if not ids:
        raise RuntimeError("no contacts: seed some first (seed_demo)")
    return keys, password, ids


def one_request(session: Session, kind: str, ids: list[int], rows: int, rng: random.Random) -> tuple[int, int]:
    """Send one request of `kind`; returns its status and the activity rows it carried."""
    contact = rng.choice(ids)
    if kind == "api":
        return session.call("GET", f"/api/v1/contacts/{contact}/"), 0
    if kind == "page":
        return session.call("GET", f"/contacts/{contact}/", api=False), 0
    if kind == "personalization":
        return session.call("GET", f"/api/v1/personalization/?contact={contact}"), 0
    when = (timezone.now() - timedelta(seconds=rng.randint(1, 600))).isoformat()
    batch = [
        {
            "contact": rng.choice(ids),
            "kind": rng.choice(INGEST_KINDS),
            "occurred_at": when,
            "topic": rng.choice(["cloud-migration", "cybersecurity", "data-analytics"]),
            "external_id": f"load-{uuid.uuid4().hex}",
        }
        for _ in range(rows)
    ]
    return session.call("POST", "/api/v1/activities/bulk/", {"rows": batch}), rows


def drive(
    *, base: str, keys: list[str], password: str, ids: list[int], seconds: float, mix: dict[str, int], rows: int,
    log: Callable[[str], None], sample_every: float = 5, stop: threading.Event | None = None,
) -> tuple[Tally, list[tuple[float, int, int]]]:
    """Run len(keys) clients for `seconds` (or until `stop` is set); returns the tally and
    (t, queued tasks, waiting contacts) samples."""
    tally = Tally()
    stop = stop or threading.Event()
    kinds = [kind for kind, weight in mix.items() for _ in range(weight)]

    # One sign-in (a password hash costs the server real CPU) whose session cookie every client uses.
    signed_in = Session(base, keys[0])
    if "page" in kinds:
        signed_in.sign_in(BENCH_USER, password)

    def client(n: int) -> None:
        rng = random.Random(n)
        session = Session(base, keys[n], cookies=signed_in.cookies)
        while not stop.is_set():
            kind = rng.choice(kinds)
            started = time.monotonic()
            try:
                status, sent = one_request(session, kind, ids, rows, rng)
                outcome = None if status < 400 else f"HTTP {status}"
            except Exception as error:  # a refused connection or a timeout is an error of the run
                status, sent, outcome = 0, 0, f"{type(error).__name__}: {error}"
            tally.record(kind, time.monotonic() - started, outcome, sent if outcome is None else 0)

    threads = [threading.Thread(target=client, args=[n], daemon=True) for n in range(len(keys))]
    samples: list[tuple[float, int, int]] = []
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while time.monotonic() - started < seconds and not stop.is_set():
        stop.wait(min(sample_every, max(0.0, seconds - (time.monotonic() - started))))
        samples.append((time.monotonic() - started, *backlog()))
        log(f"  t={samples[-1][0]:5.0f}s  queued tasks {samples[-1][1]:5d}  contacts waiting {samples[-1][2]:6d}")
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    return tally, samples


def wait_caught_up(*, timeout: float, log: Callable[[str], None], every: float = 1) -> float | None:
    """Seconds until the queue is empty and no contact waits (None: not within `timeout`)."""
    started = time.monotonic()
    last = 0.0
    while time.monotonic() - started < timeout:
        if caught_up():
            return time.monotonic() - started
        if time.monotonic() - last >= 5:
            last = time.monotonic()
            queued, waiting = backlog()
            note = catch_up_note()
            log(f"  +{last - started:4.0f}s after: queued tasks {queued}, contacts waiting {waiting}, catch-up {note}")
        time.sleep(every)
    return None


def report(tally: Tally, seconds: float, log: Callable[[str], None]) -> int:
    """Print requests, errors and latencies per kind; returns the number of errors."""
    errors = 0
    total = sum(len(v) for v in tally.latencies.values())
    log(f"requests: {total} in {seconds:.0f} s ({total / seconds:.0f}/s); activity rows ingested: {tally.rows} "
        f"({tally.rows / seconds:.0f}/s)")
    for kind in KINDS:
        latencies = tally.latencies.get(kind, [])
        if not latencies:
            continue
        failed = tally.errors.get(kind, [])
        errors += len(failed)
        log(f"  {kind:16s} {len(latencies):6d} requests, {len(failed)} errors, {summary_ms(latencies)}, "
            f"max {max(latencies) * 1000:.0f} ms")
        for message, count in Counter(failed).most_common(5):
            log(f"      {count} x {message}")
    return errors
