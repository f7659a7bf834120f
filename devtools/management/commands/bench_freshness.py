"""python manage.py bench_freshness: from an activity posted to the API to the segment's webhook.

Run it beside a server with the same DATABASE_URL, REDIS_URL and Q_CLUSTER_NAME (as bench_load).
It starts an HTTP receiver on --receiver-port, makes a segment "whoever requested a demo in campaign
<token>" (built, empty) whose joins call the receiver through an automation's webhook action (an
internal destination), then --probes times: posts one such activity for a reachable contact through
activities/bulk/ and waits for the receiver to hear of that contact. Prints the distribution of the
time between the POST and the webhook's arrival. With --load N, N bench_load clients (the default
mix) run meanwhile, so the same figure is measured under load.

    SECRET_KEY=... DATABASE_URL=... .venv/bin/python manage.py bench_freshness --url http://127.0.0.1:8711
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from activation.automation_models import AutomationAction
from activation.models import Destination
from api.keys import create_api_key
from api.models import Scope
from contacts.models import Contact
from devtools import load
from segments.models import Segment
from segments.refresh import refresh_segment


class Receiver(ThreadingHTTPServer):
    """Notes when each contact of an automation's webhook call arrived."""

    def __init__(self, port: int) -> None:
        self.arrived: dict[int, float] = {}
        self.heard = threading.Condition()
        super().__init__(("127.0.0.1", port), Handler)


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        now = time.monotonic()
        with self.server.heard:
            for member in body.get("added", []):
                self.server.arrived.setdefault(member["id"], now)
            self.server.heard.notify_all()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class Command(BaseCommand):
    help = "Time an API activity to its segment's join webhook, idle or under bench_load's mix."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", required=True, help="The server, e.g. http://127.0.0.1:8711")
        parser.add_argument("--probes", type=int, default=30)
        parser.add_argument("--receiver-port", type=int, default=8712)
        parser.add_argument("--load", type=int, default=0, help="bench_load clients running meanwhile")
        parser.add_argument("--timeout", type=float, default=60, help="Seconds to wait for one probe")

    def handle(self, *args, **options) -> None:
        token = uuid.uuid4().hex[:10]
        receiver = Receiver(options["receiver_port"])
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        segment = self.probe_segment(token, options["receiver_port"])
        expires = timezone.now() + timedelta(hours=2)
        key = create_api_key(name=f"bench-freshness {token}", scopes=[Scope.ACTIVITIES_WRITE], expires_at=expires)[1]
        session = load.Session(options["url"], key)
        probes = list(Contact.objects.reachable().order_by("?").values_list("pk", flat=True)[: options["probes"]])
        if len(probes) < options["probes"]:
            raise CommandError(f"only {len(probes)} reachable contacts; seed more first")
        stop_load = self.start_load(options["url"], options["load"])
        try:
            latencies = [self.probe(session, receiver, contact, token, options["timeout"]) for contact in probes]
        finally:
            stop_load()
            receiver.shutdown()
            segment.automations.all().delete()
            segment.delete()
            Destination.objects.filter(name=f"freshness {token}").delete()
        timed = [seconds for seconds in latencies if seconds is not None]
        self.stdout.write(
            f"freshness ({'idle' if not options['load'] else str(options['load']) + ' load clients'}): "
            f"{len(timed)} of {len(latencies)} probes arrived; {load.summary_ms(timed)}, "
            f"max {max(timed, default=0) * 1000:.0f} ms"
        )
        if len(timed) < len(latencies):
            raise SystemExit(1)

    def probe_segment(self, token: str, port: int) -> Segment:
        rule = {"event": {"kind": "demo_request", "campaign": f"fresh-{token}"}, "op": "performed"}
        segment = Segment.objects.create(
            name=f"Freshness {token}", slug=f"freshness-{token}", kind="dynamic", rule=rule
        )
        assert refresh_segment(segment.pk).status == "ok"  # built (empty): writes are re-read from now on
        destination = Destination.objects.create(
            name=f"freshness {token}",
            kind="webhook",
            url=f"http://127.0.0.1:{port}/hook",
            secret=token,
            is_internal=True,
            batch_size=1000,
        )
        automation = segment.automations.create(name=f"freshness {token}", trigger="join")
        AutomationAction.objects.create(automation=automation, position=0, kind="webhook", destination=destination)
        return segment

    def probe(self, session: load.Session, receiver: Receiver, contact: int, token: str, timeout: float):
        row = {
            "contact": contact,
            "kind": "demo_request",
            "campaign": f"fresh-{token}",
            "occurred_at": (timezone.now() - timedelta(seconds=1)).isoformat(),
            "external_id": f"fresh-{token}-{contact}",
        }
        started = time.monotonic()
        status = session.call("POST", "/api/v1/activities/bulk/", {"rows": [row]})
        if status != 200:
            raise CommandError(f"activities/bulk/ answered {status}")
        with receiver.heard:
            receiver.heard.wait_for(lambda: contact in receiver.arrived, timeout=timeout)
        arrived = receiver.arrived.get(contact)
        time.sleep(0.5)
        return None if arrived is None else arrived - started

    def start_load(self, base: str, clients: int):
        if not clients:
            return lambda: None
        keys, password, ids = load.prepare(clients)
        done = threading.Event()

        def run() -> None:
            load.drive(
                base=base,
                keys=keys,
                password=password,
                ids=ids,
                seconds=3600,
                mix={"api": 3, "page": 2, "personalization": 2, "ingest": 3},
                rows=20,
                log=lambda line: None,
                stop=done,
            )

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        time.sleep(5)  # the load is up before the first probe

        def stop() -> None:
            done.set()
            thread.join(timeout=120)

        return stop
