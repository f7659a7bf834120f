"""Three real `qcluster` processes sharing one Redis queue (and one PostgreSQL database) share the
work: writes are caught up, segments refreshed, automations and exports run, each exactly once.

The clusters get an environment of their own (Redis database 11 unless TEST_REDIS_URL says
otherwise, and a cluster name no other run uses), whatever this process's REDIS_URL is.
"""

import os
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from activation.automation_models import AutomationAction, AutomationRun
from activation.exports import start_run
from activation.models import ExportRun
from contacts.models import Contact, PendingChange
from segments.editing import save_segment
from segments.models import MembershipChange, Segment
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
