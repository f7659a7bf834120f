"""Load against a running server (bench_load, bench_freshness): clients in threads, per-kind
latencies, the task queue's depth while it runs, and how long the workers take to catch up.

The commands run beside the server on its database and with its broker settings (DATABASE_URL,
REDIS_URL, Q_CLUSTER_NAME), which they need to make keys, a user and probes, and to read the queue.
"""

from __future__ import annotations

import http.client
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
        return self.send(method, path, body, api=api)[0]

    def send(self, method: str, path: str, body: object = None, *, api: bool = True) -> tuple[int, bytes]:
        """The status and body of one request; a cut connection or a timeout raises (OSError, HTTPException)."""
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"} if api else {}
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


@dataclass
class Call:
    """One request a client sends (again, after a cut connection): an ingest carries its external ids."""

    kind: str
    method: str
    path: str
    body: object = None
    api: bool = True
    external_ids: list[str] = field(default_factory=list)


@dataclass
class Answer:
    status: int = 0
    body: bytes = b""
    error: str | None = None  # the last attempt's, when no attempt was answered
    cuts: list[str] = field(default_factory=list)  # attempts whose connection was cut, then sent again


# Pauses before sending a request again after its connection was cut (a web worker killed under it).
RETRY_PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0)


def send(session: Session, call: Call) -> Answer:
    """Send `call`, again after each cut connection or timeout (every request here is safe to repeat:
    reads, and ingest whose external ids make a second delivery a duplicate, not a second row)."""
    answer = Answer()
    for pause in (*RETRY_PAUSES, None):
        try:
            answer.status, answer.body = session.send(call.method, call.path, call.body, api=call.api)
            return answer
        except (OSError, http.client.HTTPException) as error:
            message = f"{type(error).__name__}: {error}"
            if pause is None:
                answer.error = message
                return answer
            answer.cuts.append(message)
            time.sleep(pause)
    return answer


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    cuts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rows: int = 0
    # Ingest: the external ids of the requests answered 2xx and of those never answered, and the rows
    # that a request sent again after a cut found stored already (its cut attempt had been served).
    acknowledged: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    stored_by_cut_attempt: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, outcome: str | None, rows: int = 0) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            if outcome:
                self.errors[kind].append(outcome)
            self.rows += rows

    def record_answer(self, call: Call, answer: Answer, seconds: float) -> None:
        outcome = answer.error or (f"HTTP {answer.status}" if answer.status >= 400 else None)
        self.record(call.kind, seconds, outcome, len(call.external_ids) if outcome is None else 0)
        with self.lock:
            self.cuts[call.kind].extend(answer.cuts)
            if not call.external_ids:
                return
            if answer.error is not None:
                self.unanswered.extend(call.external_ids)
            elif 200 <= answer.status < 300:
                self.acknowledged.extend(call.external_ids)
                if answer.cuts:
                    self.stored_by_cut_attempt += json.loads(answer.body).get("duplicates", 0)


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


def plan_request(kind: str, ids: list[int], rows: int, rng: random.Random, *, probe: str = "") -> Call:
    """One request of `kind` on random contacts; an ingest's first row is a demo request in the
    campaign `probe` when given (devtools/ledger.py)."""
    contact = rng.choice(ids)
    if kind == "api":
        return Call(kind, "GET", f"/api/v1/contacts/{contact}/")
    if kind == "page":
        return Call(kind, "GET", f"/contacts/{contact}/", api=False)
    if kind == "personalization":
        return Call(kind, "GET", f"/api/v1/personalization/?contact={contact}")
    when = (timezone.now() - timedelta(seconds=rng.randint(1, 600))).isoformat()
    external_ids = [f"load-{uuid.uuid4().hex}" for _ in range(rows)]
    batch = [
        {
            "contact": rng.choice(ids),
            "kind": rng.choice(INGEST_KINDS),
            "occurred_at": when,
            "topic": rng.choice(["cloud-migration", "cybersecurity", "data-analytics"]),
            "external_id": external_id,
        }
        for external_id in external_ids
    ]
    if probe and batch:
        batch[0].update(kind="demo_request", campaign=probe)
    return Call(kind, "POST", "/api/v1/activities/bulk/", {"rows": batch}, external_ids=external_ids)


def drive(
    *,
    base: str,
    keys: list[str],
    password: str,
    ids: list[int],
    seconds: float,
    mix: dict[str, int],
    rows: int,
    log: Callable[[str], None],
    sample_every: float = 5,
    stop: threading.Event | None = None,
    probe: str = "",
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
            call = plan_request(rng.choice(kinds), ids, rows, rng, probe=probe)
            started = time.monotonic()
            answer = send(session, call)
            tally.record_answer(call, answer, time.monotonic() - started)

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
    log(
        f"requests: {total} in {seconds:.0f} s ({total / seconds:.0f}/s); activity rows ingested: {tally.rows} "
        f"({tally.rows / seconds:.0f}/s)"
    )
    for kind in KINDS:
        latencies = tally.latencies.get(kind, [])
        if not latencies:
            continue
        failed = tally.errors.get(kind, [])
        errors += len(failed)
        cut = tally.cuts.get(kind, [])
        log(
            f"  {kind:16s} {len(latencies):6d} requests, {len(failed)} errors, {summary_ms(latencies)}, "
            f"max {max(latencies) * 1000:.0f} ms" + (f", {len(cut)} connections cut and sent again" if cut else "")
        )
        for message, count in Counter(failed).most_common(5):
            log(f"      {count} x {message}")
        for message, count in Counter(cut).most_common(3):
            log(f"      cut: {count} x {message}")
    return errors
