"""Catching up after writes (contacts/catch_up.py): a burst of writes is a bounded amount of work.

The write path records the contacts it changed in the writing transaction; one catch-up task at a
time takes all of them: metrics first, then one scoped refresh of every segment.
"""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_q.models import OrmQ, Success

from contacts import writes
from contacts.catch_up import catch_up
from contacts.models import CatchUpState, Contact, MetricsRun, PendingChange
from crmseg_site.liveness import current_session, worker_name
from segments import refresh
from segments.editing import save_segment
from segments.models import Segment
from segments.refresh import refresh_segment
from segments.tasks import enqueue_refresh_segment, refresh_segment_task
from tests.factories import ContactFactory
from tests.processes import qcluster, wait_for
from tests.segments_support import member_ids

DEMO = {"event": {"kind": "demo_request"}, "op": "performed"}
ACTIVE = {"field": "metrics.activity_count", "op": "gte", "value": 1}


def _segment(slug: str, rule: dict) -> Segment:
    segment = save_segment(Segment(name=slug, slug=slug, kind="dynamic", rule=rule))
    assert refresh_segment(segment.pk).status == "ok"
    return segment


def _ingest(contact: Contact, n: int) -> None:
    """One write (one transaction) of one demo request."""
    when = (timezone.now() - timedelta(minutes=1)).isoformat()
    result = writes.ingest_activities(
        [{"contact": contact.pk, "kind": "demo_request", "occurred_at": when, "external_id": f"{contact.pk}-{n}"}]
    )
    assert result.created == 1


def _queued() -> list[str]:
    return [row.task["func"] for row in OrmQ.objects.all()]


@pytest.mark.django_db
def test_a_burst_of_writes_queues_one_catch_up_task(django_capture_on_commit_callbacks):
    contacts = ContactFactory.create_batch(5)

    with django_capture_on_commit_callbacks(execute=True):
        for n in range(4):
            for contact in contacts:
                _ingest(contact, n)

    assert _queued() == ["contacts.tasks.catch_up_task"]
    waiting = PendingChange.objects.filter(claim=None)
    assert sorted(waiting.values_list("contact_id", "derive")) == [(c.pk, True) for c in contacts]


@pytest.mark.django_db
def test_one_catch_up_computes_metrics_then_refreshes_every_changed_contact(django_capture_on_commit_callbacks):
    # given: a segment on an event and one on a metric, and writes to 3 of 5 contacts
    contacts = ContactFactory.create_batch(5)
    requesters, active = _segment("requesters", DEMO), _segment("active", ACTIVE)
    with django_capture_on_commit_callbacks(execute=True):
        for contact in contacts[:3]:
            _ingest(contact, 0)
            _ingest(contact, 1)

    # when
    done = catch_up()

    # then: one incremental metrics run for the 3, and both segments have them (the metric one in
    # the same round: metrics come first)
    assert (done.rounds, done.contacts, done.skipped) == (1, 3, False)
    assert list(MetricsRun.objects.values_list("full", "contacts")) == [(False, 3)]
    assert member_ids(requesters) == member_ids(active) == {c.pk for c in contacts[:3]}
    assert not PendingChange.objects.exists()
    assert CatchUpState.objects.get().running_since is None


@pytest.mark.django_db
def test_a_rolled_back_write_leaves_nothing_to_catch_up(django_capture_on_commit_callbacks):
    contact = ContactFactory()

    def write_then_fail() -> None:
        with transaction.atomic():
            _ingest(contact, 0)
            raise RuntimeError("the caller's next step failed")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        write_then_fail()

    assert not PendingChange.objects.exists()
    assert _queued() == []


@pytest.mark.django_db
def test_a_catch_up_finding_another_running_leaves_the_contacts_to_it(settings):
    contact = ContactFactory()
    writes.update(Contact.objects.filter(pk=contact.pk), lead_score=70)
    now = timezone.now()
    CatchUpState.objects.create(
        pk=1, runner=uuid.uuid4(), running_since=now, heartbeat_at=now, worker=worker_name(), session=current_session()
    )

    done = catch_up()

    assert done.skipped
    assert PendingChange.objects.filter(claim=None).count() == 1


@pytest.mark.django_db
def test_many_changed_contacts_refresh_every_segment_in_full(settings, monkeypatch):
    monkeypatch.setattr(refresh, "CONTACT_CHUNK", 1)
    settings.SEGMENT_SCOPED_MAX_PERCENT = 50
    hot = _segment("hot", {"field": "lead_score", "op": "gte", "value": 50})
    before = Segment.objects.get(pk=hot.pk).last_refreshed_at
    few, *many = ContactFactory.create_batch(4)
    writes.update(Contact.objects.filter(pk=few.pk), lead_score=90)
    catch_up()
    assert Segment.objects.get(pk=hot.pk).last_refreshed_at == before  # 1 of 4: scoped

    writes.update(Contact.objects.filter(pk__in=[c.pk for c in many]), lead_score=90)
    catch_up()

    assert Segment.objects.get(pk=hot.pk).last_refreshed_at > before  # 3 of 4: the full refresh
    assert member_ids(hot) == {c.pk for c in [few, *many]}


@pytest.mark.django_db(transaction=True)
def test_a_worker_catches_up_with_a_stream_of_writes_in_a_few_tasks():
    # given: a real qcluster (ORM broker) and a segment of demo requesters
    contacts = ContactFactory.create_batch(20)
    requesters = _segment("requesters", DEMO)
    OrmQ.objects.all().delete()

    with qcluster():
        # when: 60 writes, one transaction each, while the worker runs
        for n in range(3):
            for contact in contacts:
                _ingest(contact, n)

        # then: every contact joins, nothing waits, and a few catch-up tasks did it all
        wait_for(lambda: member_ids(requesters) == {c.pk for c in contacts}, timeout=60, what="members")
        wait_for(lambda: not PendingChange.objects.exists() and not OrmQ.objects.exists(), timeout=30)

    funcs = list(Success.objects.values_list("func", flat=True))
    assert set(funcs) <= {"contacts.tasks.catch_up_task", "segments.tasks.describe_changes_task"}
    assert 1 <= funcs.count("contacts.tasks.catch_up_task") <= 5
    assert MetricsRun.objects.count() <= 10


@pytest.mark.django_db
def test_a_refresh_queued_and_not_started_is_not_queued_twice(api_client, django_capture_on_commit_callbacks):
    hot = _segment("hot", {"field": "lead_score", "op": "gte", "value": 50})
    OrmQ.objects.all().delete()
    editor = api_client("segments:write")

    first = editor.post("/api/v1/segments/hot/refresh/").json()["task_id"]
    with django_capture_on_commit_callbacks(execute=True):
        enqueue_refresh_segment(hot.pk)
    second = editor.post("/api/v1/segments/hot/refresh/").json()["task_id"]

    assert first == second
    assert _queued() == ["segments.tasks.refresh_segment_task"]
    refresh_segment_task(hot.pk)  # started: the next request queues a new one
    assert editor.post("/api/v1/segments/hot/refresh/").json()["task_id"] != first
    assert _queued() == ["segments.tasks.refresh_segment_task"] * 2
