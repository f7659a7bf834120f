"""bench_load's failure half: the accounting that proves no write was lost and no automation ran
twice, the client that sends a request again after its connection was cut, and the kills."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F
from django.utils import timezone

from activation.automation_models import AutomationRun
from activation.automations import process_pending
from contacts import writes
from contacts.models import CatchUpState, Contact
from devtools import kills, ledger, load
from segments.refresh import refresh_segment
from tests.factories import ContactFactory
from tests.processes import wait_for


def activities(probe: ledger.Probe, contacts: list[int], tag: str) -> list[dict]:
    """A load's ingest: per contact one probe demo request and one page view."""
    when = (timezone.now() - timedelta(minutes=1)).isoformat()
    rows = []
    for pk in contacts:
        rows.append({"contact": pk, "kind": "demo_request", "campaign": probe.campaign, "occurred_at": when,
                     "external_id": f"{tag}-probe-{pk}"})  # fmt: skip
        rows.append({"contact": pk, "kind": "page_view", "occurred_at": when, "external_id": f"{tag}-view-{pk}"})
    return rows


@pytest.fixture
def landed():
    """Four contacts whose load writes were stored, refreshed into the probe segment, and automated."""
    people = [c.pk for c in ContactFactory.create_batch(4, lead_score=10)]
    probe = ledger.make_probe(people)
    rows = activities(probe, people, "landed")
    writes.ingest_activities(rows)
    assert refresh_segment(probe.segment.pk).status == "ok"
    assert process_pending().done == 4
    return probe, people, [row["external_id"] for row in rows]


@pytest.mark.django_db
def test_a_load_that_landed_in_full_accounts_to_zero(landed):
    probe, people, acknowledged = landed

    result = ledger.account(probe, acknowledged=acknowledged)

    assert result == ledger.Account(writes_acknowledged=8, joins_expected=4, runs_expected=4, runs_done=4)
    assert result.failures() == 0
    assert ledger.settled(result)
    assert set(Contact.objects.filter(pk__in=people).values_list("lead_score", flat=True)) == {11}


@pytest.mark.django_db
def test_an_acknowledged_write_not_stored_is_lost(landed):
    probe, _, acknowledged = landed

    result = ledger.account(probe, acknowledged=[*acknowledged, "landed-never-stored"])

    assert (result.writes_acknowledged, result.writes_lost, result.failures()) == (9, 1, 1)


@pytest.mark.django_db
def test_a_probe_activity_whose_contact_never_joined_is_a_missing_join(landed):
    probe, _, acknowledged = landed
    late = ContactFactory(lead_score=0).pk
    writes.ingest_activities(activities(probe, [late], "late"))  # stored; no refresh ran for it

    result = ledger.account(probe, acknowledged=acknowledged)

    assert (result.joins_expected, result.joins_missing, result.failures()) == (5, 1, 1)
    assert not ledger.settled(result)


@pytest.mark.django_db
def test_a_join_whose_run_never_finished_is_a_missing_run(landed):
    probe, people, acknowledged = landed
    AutomationRun.objects.filter(contact_id=people[0]).update(status="running")  # a worker died holding it

    result = ledger.account(probe, acknowledged=acknowledged)

    assert (result.runs_expected, result.runs_done, result.runs_missing, result.failures()) == (4, 3, 1, 1)
    assert not ledger.settled(result)


@pytest.mark.django_db
def test_a_score_applied_twice_for_one_run_is_counted(landed):
    probe, people, acknowledged = landed
    Contact.objects.filter(pk=people[1]).update(lead_score=F("lead_score") + 1)  # the action again, no new run

    result = ledger.account(probe, acknowledged=acknowledged)

    assert (result.runs_done, result.scores_off, result.failures()) == (4, 1, 1)


@pytest.mark.django_db
def test_a_score_applied_without_its_run_recording_it_is_counted(landed):
    probe, people, acknowledged = landed
    AutomationRun.objects.filter(contact_id=people[2]).update(done_actions=[])  # applied, not recorded

    result = ledger.account(probe, acknowledged=acknowledged)

    assert result.scores_off == 1


class CuttingServer(ThreadingHTTPServer):
    """Answers ingest with {"duplicates": n}; drops the first `cuts` requests without an answer, as a
    killed web worker does."""

    def __init__(self, cuts: int) -> None:
        self.cuts = cuts
        self.bodies: list[dict] = []
        super().__init__(("127.0.0.1", 0), CuttingHandler)


class CuttingHandler(BaseHTTPRequestHandler):
    server: CuttingServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        if self.server.cuts:
            self.server.cuts -= 1
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        answer = json.dumps({"created": 0, "duplicates": len(body["rows"]), "failed": []}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def cutting_server(cuts: int) -> Iterator[CuttingServer]:
    server = CuttingServer(cuts)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def ingest_call() -> load.Call:
    rows = [{"external_id": "cut-1"}, {"external_id": "cut-2"}]
    return load.Call("ingest", "POST", "/api/v1/activities/bulk/", {"rows": rows}, external_ids=["cut-1", "cut-2"])


def test_an_ingest_request_carries_its_external_ids_and_one_probe_row():
    call = load.plan_request("ingest", [1, 2], 3, random.Random(1), probe="killload-x")

    rows = call.body["rows"]
    assert call.external_ids == [row["external_id"] for row in rows]
    assert len(set(call.external_ids)) == 3
    assert (rows[0]["kind"], rows[0]["campaign"]) == ("demo_request", "killload-x")
    assert [row.get("campaign") for row in rows[1:]] == [None, None]


def test_an_ingest_cut_off_is_sent_again_with_the_same_ids_and_acknowledged(monkeypatch):
    monkeypatch.setattr(load, "RETRY_PAUSES", (0, 0, 0))
    tally = load.Tally()
    with cutting_server(cuts=2) as server:
        call = ingest_call()
        answer = load.send(load.Session(f"http://127.0.0.1:{server.server_port}", "key"), call)
        tally.record_answer(call, answer, 0.1)

    assert (answer.status, len(answer.cuts), answer.error) == (200, 2, None)
    assert [body["rows"] for body in server.bodies] == [call.body["rows"]] * 3
    assert (tally.acknowledged, tally.unanswered, tally.stored_by_cut_attempt) == (["cut-1", "cut-2"], [], 2)
    assert (len(tally.cuts["ingest"]), tally.errors["ingest"], tally.rows) == (2, [], 2)


def test_an_ingest_never_answered_is_an_error_and_not_acknowledged(monkeypatch):
    monkeypatch.setattr(load, "RETRY_PAUSES", (0, 0))
    tally = load.Tally()
    with cutting_server(cuts=3) as server:
        call = ingest_call()
        answer = load.send(load.Session(f"http://127.0.0.1:{server.server_port}", "key"), call)
        tally.record_answer(call, answer, 0.1)

    assert (answer.status, len(answer.cuts), answer.error is not None) == (0, 2, True)
    assert (tally.acknowledged, tally.unanswered, len(tally.errors["ingest"]), tally.rows) == (
        [],
        ["cut-1", "cut-2"],
        1,
        0,
    )


# A process that keeps one child alive, replacing it when it dies (as gunicorn's master and
# qcluster's sentinel do); with depth 2, a child that does the same for a grandchild.
KEEPER = """
import subprocess, sys, time
depth, code = int(sys.argv[1]), sys.argv[2]
if depth == 0:
    time.sleep(120)
    sys.exit()
spawn = lambda: subprocess.Popen([sys.executable, "-c", code, str(depth - 1), code])
child = spawn()
while True:
    if child.poll() is not None:
        child = spawn()
    time.sleep(0.05)
"""


@contextmanager
def keeper(depth: int) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([sys.executable, "-c", KEEPER, str(depth), KEEPER], start_new_session=True)
    try:
        wait_for(lambda: len(kills.descendants(process.pid)) == depth, timeout=20, what="the children")
        yield process
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_web_worker_is_killed_and_its_replacement_seen():
    with keeper(depth=1) as master:
        (worker,) = kills.children(master.pid)

        kill = kills.kill_web_worker(master.pid)

        assert (kill.pid, kill.parent) == (worker, master.pid)
        assert kill.replacement is not None
        assert kills.children(master.pid) == {kill.replacement}
        assert "replaced it with" in kill.describe()


@pytest.mark.django_db
def test_the_task_worker_killed_is_the_one_the_database_shows_running_a_task():
    with keeper(depth=2) as cluster:
        below = kills.descendants(cluster.pid)
        (worker,) = [pid for pid, parent in below.items() if parent != cluster.pid]
        CatchUpState.objects.update_or_create(
            pk=1, defaults={"running_since": timezone.now(), "worker": f"{socket.gethostname()}:{worker}"}
        )

        kill = kills.kill_task_worker(cluster.pid, wait=5)

        assert (kill.pid, kill.parent, kill.doing) == (worker, below[worker], "running the catch-up after writes")
        assert kill.replacement is not None
        assert kill.replacement not in below
        assert set(kills.descendants(cluster.pid)) == set(below) - {worker} | {kill.replacement}


@pytest.mark.django_db
def test_no_task_worker_is_killed_when_none_runs_a_task():
    with keeper(depth=2) as cluster:
        below = kills.descendants(cluster.pid)

        with pytest.raises(RuntimeError, match="ran a task"):
            kills.kill_task_worker(cluster.pid, wait=0.5)

        assert kills.descendants(cluster.pid) == below


def test_bench_load_refuses_a_kill_without_the_process_to_kill_it_under():
    with pytest.raises(CommandError, match="--kill-worker-at needs --qcluster-pid"):
        call_command("bench_load", "--url", "http://127.0.0.1:1", "--kill-worker-at", "20")
