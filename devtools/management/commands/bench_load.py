"""python manage.py bench_load: N clients for S seconds against a running server, then the catch-up.

Run it beside a server (make serve, or gunicorn and qcluster) with the same DATABASE_URL, REDIS_URL
and Q_CLUSTER_NAME: it makes one API key per client (separate integrations, each under its own rate
limit) and a signed-in user for the contact pages, then each client sends, as fast as answers come,
a mix of API reads (GET contacts/<id>/), contact pages, personalization calls and activity ingest
(activities/bulk/ with --rows rows). It prints requests, errors and p50/p95 per kind, the task
queue's depth and the contacts waiting for a catch-up every few seconds, and how long after the
load the queue is empty and no contact waits (segments current). Exits 1 on any error or when the
workers have not caught up within --settle seconds.

    SECRET_KEY=... DATABASE_URL=... .venv/bin/python manage.py bench_load --url http://127.0.0.1:8711 --clients 20
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devtools import load


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

    def handle(self, *args, **options) -> None:
        mix = parse_mix(options["mix"])
        keys, password, ids = load.prepare(options["clients"])
        self.log(f"{options['clients']} clients x {options['seconds']:.0f} s against {options['url']}, mix {mix}, "
                 f"{options['rows']} rows per ingest, over {len(ids)} contacts")
        tally, _samples = load.drive(
            base=options["url"], keys=keys, password=password, ids=ids, seconds=options["seconds"], mix=mix,
            rows=options["rows"], log=self.log,
        )
        errors = load.report(tally, options["seconds"], self.log)
        self.log("after the load:")
        settled = load.wait_caught_up(timeout=options["settle"], log=self.log)
        if settled is None:
            self.log(f"NOT caught up within {options['settle']:.0f} s")
        else:
            self.log(f"caught up (queue empty, no contact waiting) {settled:.1f} s after the load stopped")
        if errors or settled is None:
            raise SystemExit(1)

    def log(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
