"""python manage.py bench_load: N clients for S seconds against a running server, then the catch-up.

Run it beside a server (make serve, or gunicorn and qcluster) with the same DATABASE_URL, REDIS_URL
and Q_CLUSTER_NAME: it makes one API key per client (separate integrations, each under its own rate
limit) and a signed-in user for the contact pages, then each client sends, as fast as answers come,
a mix of API reads (GET contacts/<id>/), contact pages, personalization calls and activity ingest
(activities/bulk/ with --rows rows). It prints requests, errors and p50/p95 per kind, the task
queue's depth and the contacts waiting for a catch-up every few seconds, and how long after the
load the queue is empty and no contact waits (segments current). Exits 1 on any error or when the
workers have not caught up within --settle seconds.

With --kill-web-at S (and --gunicorn-pid, the master) it SIGKILLs one gunicorn worker S seconds into
the load, with --kill-worker-at S (and --qcluster-pid) one qcluster task worker while it runs a task
(devtools/kills.py), and says when each was replaced. Clients send a request whose connection was
cut again (ingest is idempotent by external id). The run then accounts for its writes and a probe
automation (devtools/ledger.py, also with --account): acknowledged rows lost or stored twice, joins
of the probe segment missing or repeated, join runs missing or repeated, lead scores moved by other
than the runs applied; any of these non-zero exits 1.

    SECRET_KEY=... DATABASE_URL=... .venv/bin/python manage.py bench_load --url http://127.0.0.1:8711 --clients 20
    ... bench_load --url ... --clients 10 --gunicorn-pid 4242 --kill-web-at 20 --qcluster-pid 4250 --kill-worker-at 30
"""

from __future__ import annotations

import time
from functools import partial

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devtools import kills, ledger, load


def parse_mix(raw: str) -> dict[str, int]:
    mix = {}
    for part in raw.split(","):
        kind, _, weight = part.partition("=")
        if kind not in load.KINDS or not weight.isdigit():
            raise CommandError(f"--mix {raw!r}: use kind=weight pairs of {', '.join(load.KINDS)}, e.g. api=3,ingest=2")
        mix[kind] = int(weight)
    return mix


class Command(BaseCommand):
    help = "Drive N concurrent clients against a running server, then time the workers' catch-up."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", required=True, help="The server, e.g. http://127.0.0.1:8711")
        parser.add_argument("--clients", type=int, default=20)
        parser.add_argument("--seconds", type=float, default=60)
        parser.add_argument("--rows", type=int, default=20, help="Activities per ingest request")
        parser.add_argument("--mix", default="api=3,page=2,personalization=2,ingest=3", help="kind=weight,...")
        parser.add_argument("--settle", type=float, default=300, help="Seconds to wait for the catch-up")
        parser.add_argument("--gunicorn-pid", type=int, help="gunicorn's master process, for --kill-web-at")
        parser.add_argument("--kill-web-at", type=float, help="SIGKILL one gunicorn worker this many s in")
        parser.add_argument("--qcluster-pid", type=int, help="The `manage.py qcluster` process, for --kill-worker-at")
        parser.add_argument("--kill-worker-at", type=float, help="SIGKILL one busy qcluster worker this many s in")
        parser.add_argument("--account", action="store_true", help="Account for writes and automations (on with kills)")

    def handle(self, *args, **options) -> None:
        mix = parse_mix(options["mix"])
        planned = self.planned_kills(options)
        accounting = bool(planned) or options["account"]
        if accounting and "ingest" not in mix:
            raise CommandError("accounting for writes needs ingest in --mix")
        keys, password, ids = load.prepare(options["clients"])
        probe = ledger.make_probe(ids) if accounting else None
        self.log(
            f"{options['clients']} clients x {options['seconds']:.0f} s against {options['url']}, mix {mix}, "
            f"{options['rows']} rows per ingest, over {len(ids)} contacts"
        )
        done: list[kills.Kill] = []
        for seconds, action in planned:
            kills.at(seconds, action, self.log, done)
        tally, _samples = load.drive(
            base=options["url"],
            keys=keys,
            password=password,
            ids=ids,
            seconds=options["seconds"],
            mix=mix,
            rows=options["rows"],
            log=self.log,
            probe=probe.campaign if probe else "",
        )
        errors = load.report(tally, options["seconds"], self.log)
        cut = sum(len(messages) for messages in tally.cuts.values())
        if tally.stored_by_cut_attempt:
            self.log(
                f"  ingest rows a request sent again found stored by its cut attempt: {tally.stored_by_cut_attempt}"
            )
        self.log("after the load:")
        started = time.monotonic()
        settled = load.wait_caught_up(timeout=options["settle"], log=self.log)
        if settled is None:
            self.log(f"NOT caught up within {options['settle']:.0f} s")
        else:
            self.log(f"caught up (queue empty, no contact waiting) {settled:.1f} s after the load stopped")
        failures = errors + (cut if not planned else 0) + (settled is None) + (len(planned) - len(done))
        if probe is not None:
            failures += self.account(probe, tally, timeout=options["settle"] - (time.monotonic() - started))
        if failures:
            raise SystemExit(1)

    def planned_kills(self, options: dict) -> list[tuple[float, kills.Action]]:
        planned: list[tuple[float, kills.Action]] = []
        for at, pid, name, kill in (
            ("kill_web_at", "gunicorn_pid", "--gunicorn-pid", kills.kill_web_worker),
            ("kill_worker_at", "qcluster_pid", "--qcluster-pid", kills.kill_task_worker),
        ):
            if options[at] is None:
                continue
            if options[pid] is None:
                raise CommandError(f"--{at.replace('_', '-')} needs {name}")
            planned.append((options[at], partial(kill, options[pid])))
        return planned

    def account(self, probe: ledger.Probe, tally: load.Tally, *, timeout: float) -> int:
        """Wait (up to `timeout` s) for the probe's joins and runs, print the account; returns its failures."""
        deadline = time.monotonic() + timeout
        result = ledger.account(probe, acknowledged=tally.acknowledged)
        while not ledger.settled(result) and time.monotonic() < deadline:
            time.sleep(2)
            result = ledger.account(probe, acknowledged=tally.acknowledged)
        self.log(f"accounting ({len(tally.unanswered)} ingest rows never answered, not counted):")
        for line in result.lines():
            self.log(line)
        ledger.drop_probe(probe)
        failures = result.failures()
        self.log("0 lost writes, 0 duplicate automations" if not failures else f"FAILED: {failures} off")
        return failures

    def log(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
