"""Three real `qcluster` processes sharing one Redis queue (and one PostgreSQL database) share the
work: writes are caught up, segments refreshed, automations and exports run, each exactly once, also
when a task worker is killed inside an automation batch.

The clusters get an environment of their own (Redis database 11 unless TEST_REDIS_URL says
otherwise, and a cluster name no other run uses), whatever this process's REDIS_URL is.
"""

import os
import threading
import time
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule
from werkzeug import Request, Response

from activation.automation_models import AutomationAction, AutomationRun
from activation.exports import start_run
from activation.models import ExportRun
from contacts.models import Contact, PendingChange
from devtools import kills
from segments.editing import save_segment
from segments.models import Membership, MembershipChange, Segment
from segments.refresh import refresh_segment
from tests.factories import ActivationFactory, AutomationFactory, ContactFactory, DestinationFactory
from tests.processes import python, qcluster, wait_for
from tests.segments_support import member_ids

pytestmark = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="many workers share one database server: PostgreSQL (SQLite is the one-process embedded default)",
)

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11")

# Run in a child process with the clusters' environment, so that async_task goes to their queue:
# one write per contact (each its own transaction, each asking for a catch-up), and the same
# refreshes, automation passes and export run queued three times over.
ENQUEUE = """
import sys
from datetime import timedelta
from django.utils import timezone
from django_q.tasks import async_task
from contacts import writes
segment, run = int(sys.argv[1]), int(sys.argv[2])
when = (timezone.now() - timedelta(minutes=1)).isoformat()
for contact in map(int, sys.argv[3:]):
    row = {"contact": contact, "kind": "demo_request", "occurred_at": when, "external_id": f"w-{contact}"}
    writes.ingest_activities([row])
for _ in range(3):
    async_task("segments.tasks.refresh_all_task")
    async_task("segments.tasks.refresh_segment_task", segment)
    async_task("activation.automations.process_automations")
print("queued", flush=True)
"""
EXPORT = """
import sys
from django_q.tasks import async_task
for _ in range(3):
    async_task("activation.tasks.run_export", int(sys.argv[1]))
print("queued", flush=True)
"""


@pytest.fixture
def cluster_env():
    name = f"crmseg-test-{uuid.uuid4().hex[:12]}"
    env = {"REDIS_URL": REDIS_URL, "Q_CLUSTER_NAME": name, "CATCH_UP_LEASE_SECONDS": 5}
    yield env
    queue = redis.Redis.from_url(REDIS_URL)
    queue.delete(*queue.keys(f"*{env['Q_CLUSTER_NAME']}*") or ["-"])


@pytest.mark.django_db(transaction=True)
def test_three_clusters_on_redis_do_each_piece_of_work_once(cluster_env, settings, tmp_path):
    # given: 30 contacts, a segment of demo requesters (built: empty), an automation adding 1 to the
    # score of each who joins, and a CSV activation of the segment
    settings.MEDIA_ROOT = tmp_path
    people = ContactFactory.create_batch(30, lead_score=0)
    rule = {"event": {"kind": "demo_request"}, "op": "performed"}
    segment = save_segment(Segment(name="Requesters", slug="requesters", kind="dynamic", rule=rule))
    assert refresh_segment(segment.pk).status == "ok"
    automation = AutomationFactory(trigger_segment=segment)
    AutomationAction.objects.create(automation=automation, position=0, kind="adjust_score", score_delta=1)
    activation = ActivationFactory(segment=segment, destination=DestinationFactory(csv_columns=["email"]))
    ids = [c.pk for c in people]

    with (
        qcluster(MEDIA_ROOT=tmp_path, **cluster_env),
        qcluster(MEDIA_ROOT=tmp_path, **cluster_env),
        qcluster(MEDIA_ROOT=tmp_path, **cluster_env),
    ):
        # when: 30 writes and the same work queued three times over, then an export run three times
        with python(ENQUEUE, segment.pk, 0, *ids, **cluster_env) as child:
            assert child.stdout.readline().split() == ["queued"]
        wait_for(lambda: member_ids(segment) == set(ids), timeout=40, what="every writer to join")
        wait_for(lambda: AutomationRun.objects.filter(status="done").count() == 30, timeout=30, what="automations")
        run = start_run(activation)
        with python(EXPORT, run.pk, **cluster_env) as child:
            assert child.stdout.readline().split() == ["queued"]
        wait_for(lambda: ExportRun.objects.get(pk=run.pk).status == "succeeded", timeout=30, what="the export")
        wait_for(lambda: not PendingChange.objects.exists(), timeout=30, what="the catch-up to finish")

    # then: each contact joined once (no two refreshes of the segment interleaved), its automation ran
    # once (score 1, never 2), and the export ran once
    changes = MembershipChange.objects.filter(segment=segment)
    assert sorted(changes.values_list("contact_id", "kind")) == [(pk, "join") for pk in sorted(ids)]
    assert set(Contact.objects.filter(pk__in=ids).values_list("lead_score", flat=True)) == {1}
    assert AutomationRun.objects.count() == 30
    assert set(AutomationRun.objects.values_list("status", "attempts")) == {("done", 1)}
    run.refresh_from_db()
    assert (run.status, run.attempts, run.exported_count) == ("succeeded", 1, 30)
    assert ExportRun.objects.count() == 1
    assert Segment.objects.get(pk=segment.pk).size == 30
    assert timezone.now() - run.finished_at < timedelta(minutes=1)


PROCESS_AUTOMATIONS = """
from django_q.tasks import async_task
async_task("activation.automations.process_automations")
print("queued", flush=True)
"""


class HeldWebhook:
    """A webhook receiver (pytest-httpserver) that holds the first request it gets until released,
    so that a worker is known to be inside its automation batch, and answers every other at once."""

    def __init__(self) -> None:
        self.arrived, self.released = threading.Event(), threading.Event()
        self.requests: list[tuple[str, list[int]]] = []  # (idempotency key, contact ids), as received

    def __call__(self, request: Request) -> Response:
        self.requests.append((request.headers["Idempotency-Key"], [m["id"] for m in request.get_json()["added"]]))
        if len(self.requests) == 1:
            self.arrived.set()
            self.released.wait(timeout=60)
        return Response('{"ok": true}', content_type="application/json")


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_inside_an_automation_batch_leaves_every_automation_applied_once(cluster_env, httpserver):
    # given: two clusters on Redis (3 s claim lease), 30 contacts who joined a segment, and its
    # automation: score +1, then a webhook (one request for the 30), then score +10
    Schedule.objects.all().delete()  # recovery is what this test queues, not a job that comes due
    people = ContactFactory.create_batch(30, lead_score=0)
    ids = sorted(c.pk for c in people)
    automation = AutomationFactory()
    hook = DestinationFactory(
        kind="webhook", url=httpserver.url_for("/hook"), secret="s", is_internal=True, batch_size=100
    )
    for position, action in enumerate(
        [
            {"kind": "adjust_score", "score_delta": 1},
            {"kind": "webhook", "destination": hook},
            {"kind": "adjust_score", "score_delta": 10},
        ]
    ):
        AutomationAction.objects.create(automation=automation, position=position, **action)
    Membership.objects.bulk_create(Membership(segment=automation.trigger_segment, contact=c) for c in people)
    MembershipChange.objects.bulk_create(
        MembershipChange(segment=automation.trigger_segment, contact=c, kind="join", reason="rule") for c in people
    )
    receiver = HeldWebhook()
    httpserver.expect_request("/hook", method="POST").respond_with_handler(receiver)
    env = {**cluster_env, "AUTOMATION_CLAIM_LEASE_SECONDS": 3, "ACTIVATION_WEBHOOK_TIMEOUT_SECONDS": 60}

    with qcluster(**env) as first, qcluster(**env) as second:
        with python(PROCESS_AUTOMATIONS, **env) as child:
            assert child.stdout.readline().split() == ["queued"]
        assert receiver.arrived.wait(timeout=60), "no worker called the webhook"

        # when: the worker holding the batch, inside its webhook call, is killed
        (worker,) = {int(run.claimed_by.rpartition(":")[2]) for run in AutomationRun.objects.all()}
        cluster = first if worker in kills.descendants(first.pid) else second
        killed = kills.kill_task_worker(cluster.pid, wait=5)
        receiver.released.set()
        # and the every-minute schedule's pass (queued every 2 s here) runs until the batch is done
        deadline = time.monotonic() + 60
        while AutomationRun.objects.exclude(status="done").exists():
            assert time.monotonic() < deadline, "the batch was never finished"
            with python(PROCESS_AUTOMATIONS, **env) as child:
                assert child.stdout.readline().split() == ["queued"]
            time.sleep(2)

    # then: the kill landed on that worker, inside the batch, and the cluster replaced it
    assert (killed.pid, killed.doing) == (worker, "running a claimed batch of automation runs")
    assert killed.replacement is not None
    # every score action applied once per run (1 + 10, never 2 or 22), each run claimed twice
    assert set(Contact.objects.filter(pk__in=ids).values_list("lead_score", flat=True)) == {11}
    runs = AutomationRun.objects.all()
    assert {(run.status, run.attempts) for run in runs} == {("done", 2)}
    assert all(not run.claimed_by.endswith(f":{worker}") for run in runs)
    # the webhook: the cut call sent again with the same idempotency key, so the receiver counts
    # one delivery of each contact
    keys = {key for key, _ in receiver.requests}
    assert len(receiver.requests) == 2
    assert len(keys) == 1
    assert [sorted(contacts) for _, contacts in receiver.requests] == [ids, ids]
