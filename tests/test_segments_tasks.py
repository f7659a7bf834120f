from io import StringIO
from multiprocessing import Event, Queue, Value

import pytest
from django.core.management import call_command
from django_q.brokers import get_broker
from django_q.models import OrmQ, Schedule, Success, Task
from django_q.monitor import monitor
from django_q.pusher import pusher
from django_q.tasks import async_task
from django_q.worker import worker

from contacts import changes, writes
from contacts.models import Contact
from crmseg_site.schedules import ensure_schedules
from segments.editing import save_segment
from segments.models import MembershipChange, Segment
from segments.refresh import refresh_segment
from segments.tasks import REFRESH_ALL_SCHEDULE, refresh_changed
from tests.factories import ContactFactory
from tests.segments_support import history, member_ids

HOT = {"field": "lead_score", "op": "gte", "value": 50}


def _hot() -> Segment:
    return save_segment(Segment(name="Hot", slug="hot", kind="dynamic", rule=HOT))


def _run_queued_tasks() -> None:
    """What a qcluster does, in this process: pull from the ORM broker, execute, save results."""
    broker = get_broker()
    task_queue, result_queue, stop = Queue(), Queue(), Event()
    stop.set()  # one pass of the pusher per call; the ORM broker hands out one task per pass
    for _ in range(OrmQ.objects.count()):
        pusher(task_queue, stop, broker=broker)
    task_queue.put("STOP")
    worker(task_queue, result_queue, Value("f", -1))
    result_queue.put("STOP")
    monitor(result_queue, broker=broker)


def test_refresh_all_runs_through_django_q(db):
    contact = ContactFactory(lead_score=80)
    segment = _hot()

    task_id = async_task("segments.tasks.refresh_all_task", sync=True)

    task = Task.objects.get(id=task_id)
    assert task.success
    assert [(r["slug"], r["status"], r["added"]) for r in task.result] == [("hot", "ok", 1)]
    assert member_ids(segment) == {contact.pk}


def test_the_segments_app_reads_changed_contacts_after_metrics_and_scores():
    assert changes.readers() == [refresh_changed]
    assert [f.__name__ for f in changes.derivers()] == ["recompute_changed_metrics", "score_changed_contacts"]


# A worker closes "old" connections before each task, so these run with real commits.
@pytest.mark.django_db(transaction=True)
def test_a_contact_change_is_refreshed_by_a_worker_after_commit():
    contact = ContactFactory(lead_score=10)
    segment = _hot()
    assert refresh_segment(segment.pk).status == "ok"
    OrmQ.objects.all().delete()

    contact.lead_score = 75
    writes.save(contact)
    queued = [(t.task["func"], t.task["args"]) for t in OrmQ.objects.all()]
    _run_queued_tasks()

    assert queued == [("contacts.tasks.catch_up_task", ())]
    assert member_ids(segment) == {contact.pk}
    assert history(segment) == [(contact.pk, "join", "rule")]
    done = Success.objects.get(func="contacts.tasks.catch_up_task")
    assert done.result == {"rounds": 1, "contacts": 1, "skipped": False}
    # the refresh committed, then queued the task that describes its change
    assert [t.task["func"] for t in OrmQ.objects.all()] == ["segments.tasks.describe_changes_task"]
    assert MembershipChange.objects.get(segment=segment).detail is None
    _run_queued_tasks()

    assert Success.objects.get(func="segments.tasks.describe_changes_task").result == 1
    detail = MembershipChange.objects.get(segment=segment).detail
    assert detail["conditions"][0]["text"] == "Lead score is at least 50: 75"
    assert not OrmQ.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_saved_segment_is_built_by_a_worker():
    contact = ContactFactory(lead_score=90)

    segment = _hot()
    _run_queued_tasks()

    assert member_ids(segment) == {contact.pk}
    assert history(segment) == [(contact.pk, "join", "initial_build")]


def test_changed_contacts_are_not_refreshed_when_refresh_on_write_is_off(db, settings):
    contact = ContactFactory(lead_score=90)
    segment = _hot()
    assert refresh_segment(segment.pk).status == "ok"
    settings.SEGMENT_REFRESH_ON_WRITE = False

    writes.update(Contact.objects.filter(pk=contact.pk), lead_score=5)

    assert refresh_changed([contact.pk]) == []
    assert member_ids(segment) == {contact.pk}


def test_the_sweep_schedule_follows_the_interval_setting(db, settings):
    call_command("ensure_schedules", stdout=StringIO())
    schedule = Schedule.objects.get(name=REFRESH_ALL_SCHEDULE)
    assert (schedule.func, schedule.minutes, schedule.repeats) == ("segments.tasks.refresh_all_task", 60, -1)

    settings.SEGMENT_REFRESH_INTERVAL_MINUTES = 15
    ensure_schedules()
    ensure_schedules()

    assert Schedule.objects.get(name=REFRESH_ALL_SCHEDULE).minutes == 15
    assert Schedule.objects.filter(func="segments.tasks.refresh_all_task").count() == 1


def test_the_refresh_task_also_refreshes_the_segments_that_depend_on_it(db):
    contact, cold = ContactFactory(lead_score=90, lifecycle_stage="mql"), ContactFactory(lead_score=5)
    parent = _hot()
    child = save_segment(
        Segment(
            name="Hot MQLs",
            slug="hot-mqls",
            kind="dynamic",
            parent=parent,
            rule={"field": "lifecycle_stage", "op": "eq", "value": "mql"},
        )
    )
    reader = save_segment(Segment(name="Not hot", slug="not-hot", kind="dynamic", rule={"not": {"in_segment": "hot"}}))

    results = async_task("segments.tasks.refresh_segment_task", parent.pk, sync=True)

    assert [r["slug"] for r in Task.objects.get(id=results).result] == ["hot", "hot-mqls", "not-hot"]
    assert member_ids(child) == {contact.pk}
    assert member_ids(reader) == {cold.pk}
