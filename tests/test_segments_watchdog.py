"""Refreshes that show: a refresh says it is running, a dead one is failed with the reason within
seconds, and it is retried with back-off, exactly once however many watchdogs look."""

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.tasks import async_task

from contacts.models import Contact
from crmseg_site.liveness import death, worker_name
from segments.editing import save_segment
from segments.models import Membership, Segment
from segments.refresh import refresh_segment
from segments.tasks import WATCH_HALF_SCHEDULE, WATCH_SCHEDULE, refresh_segment_task
from segments.watchdog import mark_running, watch_refreshes
from tests.factories import ContactFactory
from tests.processes import kill, python, qcluster, raw_postgres, wait_for
from tests.segments_support import member_ids

postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'")

HOT = {"field": "lead_score", "op": "gte", "value": 50}

# Refresh a segment in another process, stopping for good once the membership is written.
HANGING_REFRESH = """
import sys, time
from segments import refresh
applied = refresh.write_members
def apply_and_hang(*args, **kwargs):
    written = applied(*args, **kwargs)
    print("applied", flush=True)
    time.sleep(300)
refresh.write_members = apply_and_hang
refresh.refresh_segment(int(sys.argv[1]))
"""


@pytest.fixture
def fast(settings):
    settings.RUN_HEARTBEAT_SECONDS = 1
    settings.RUN_DEAD_AFTER_SECONDS = 3
    settings.RUN_RETRY_BACKOFF_SECONDS = 0
    return settings


def _hot_with_two_members() -> tuple[Segment, Contact, Contact]:
    """A built segment of two contacts, one of whom no longer matches (the next refresh removes it)."""
    staying, leaving = ContactFactory(lead_score=80), ContactFactory(lead_score=80)
    segment = save_segment(Segment(name="Hot", slug="hot", kind="dynamic", rule=HOT))
    assert refresh_segment(segment.pk).status == "ok"
    Contact.objects.filter(pk=leaving.pk).update(lead_score=10)
    OrmQ.objects.all().delete()
    return Segment.objects.get(pk=segment.pk), staying, leaving


def _refresh_tasks() -> list[int]:
    return [t.task["args"][0] for t in OrmQ.objects.all() if t.task["func"] == "segments.tasks.refresh_segment_task"]


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_refresh_shows_failed_and_the_retry_completes(fast):
    # given a qcluster worker refreshing the segment, stuck deleting a member whose row we hold
    segment, staying, leaving = _hot_with_two_members()
    holder = raw_postgres()
    holder.execute(
        "SELECT 1 FROM segments_membership WHERE segment_id = %s AND contact_id = %s FOR UPDATE",
        [segment.pk, leaving.pk],
    )
    with qcluster():
        async_task("segments.tasks.refresh_segment_task", segment.pk)
        running = wait_for(
            lambda: Segment.objects.filter(pk=segment.pk, refresh_running_since__isnull=False).first(),
            what="the worker to mark the refresh running",
        )
        wait_for(lambda: _waiting_for_a_lock(), what="the worker to wait for the membership row")
        # its heartbeat goes on while it waits (every RUN_HEARTBEAT_SECONDS, here 1)
        wait_for(
            lambda: Segment.objects.filter(pk=segment.pk, refresh_heartbeat_at__gt=running.refresh_running_since),
            what="a heartbeat",
        )
        # the segment shows the refresh running, and which worker runs it
        assert running.refresh_worker.rpartition(":")[2].isdigit()
        assert running.last_refresh_status == "ok"

        # when that worker is killed
        kill(int(running.refresh_worker.rpartition(":")[2]))
        outcome = wait_for(lambda: watch_refreshes()["refreshes_failed"], timeout=20, what="the watchdog")

        # then the segment shows the refresh failed, and why, with its membership untouched
        assert outcome == [segment.pk]
        segment.refresh_from_db()
        assert segment.last_refresh_status == "failed"
        assert segment.refresh_running_since is None
        assert f"the worker {running.refresh_worker} stopped: its database session" in segment.last_refresh_error
        assert segment.refresh_failures == 1
        assert segment.refresh_retry_at is not None
        assert member_ids(segment) == {staying.pk, leaving.pk}

        # and its retry, queued once, is done by the worker that replaced the dead one
        holder.rollback()
        assert watch_refreshes()["refreshes_retried"] == [segment.pk]
        assert watch_refreshes()["refreshes_retried"] == []
        wait_for(
            lambda: Segment.objects.filter(pk=segment.pk, last_refresh_status="ok").exists(),
            what="the retried refresh",
        )
    holder.close()
    segment.refresh_from_db()
    assert member_ids(segment) == {staying.pk}
    assert (segment.refresh_failures, segment.refresh_retry_at, segment.last_refresh_error) == (0, None, "")


def _waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_a_refresh_process_killed_after_writing_leaves_the_members_and_shows_failed(fast):
    # given another process refreshing the segment, killed once it has written the membership
    segment, staying, leaving = _hot_with_two_members()
    with python(HANGING_REFRESH, segment.pk) as process:
        assert process.stdout.readline().strip() == "applied"
        running = Segment.objects.get(pk=segment.pk)
        assert running.refresh_running_since is not None
        assert running.refresh_worker.endswith(f":{process.pid}")
        kill(process.pid)
        process.wait()

    # when the watchdog looks (SQLite: once the heartbeat is older than RUN_DEAD_AFTER_SECONDS)
    outcome = wait_for(lambda: watch_refreshes()["refreshes_failed"], timeout=20, what="the watchdog")

    # then the refresh shows failed with the reason, the membership is as before, and a retry fixes it
    assert outcome == [segment.pk]
    segment.refresh_from_db()
    assert segment.last_refresh_status == "failed"
    reason = "its database session" if connection.vendor == "postgresql" else "no heartbeat since"
    assert f"the worker {running.refresh_worker} stopped: {reason}" in segment.last_refresh_error
    assert member_ids(segment) == {staying.pk, leaving.pk}
    assert watch_refreshes()["refreshes_retried"] == [segment.pk]
    assert _refresh_tasks() == [segment.pk]
    assert [r["status"] for r in refresh_segment_task(segment.pk)] == ["ok"]
    assert member_ids(segment) == {staying.pk}


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_refresh_whose_connection_is_terminated_is_retried_with_back_off(fast):
    # given a refresh (in a thread: a connection of its own) waiting for a member's row we hold
    fast.RUN_RETRY_BACKOFF_SECONDS = 60
    segment, staying, leaving = _hot_with_two_members()
    holder = raw_postgres()
    holder.execute("SELECT 1 FROM segments_membership WHERE contact_id = %s FOR UPDATE", [leaving.pk])
    results = []
    worker = threading.Thread(target=lambda: (results.append(refresh_segment(segment.pk)), connection.close()))
    worker.start()
    running = wait_for(lambda: Segment.objects.filter(pk=segment.pk, refresh_running_since__isnull=False).first())
    wait_for(_waiting_for_a_lock)

    # when its database connection is terminated
    backend = int(running.refresh_session.partition("@")[0])
    holder.execute("SELECT pg_terminate_backend(%s)", [backend])
    worker.join(timeout=30)
    holder.rollback()
    holder.close()

    # then it shows failed with the database's message and a retry a back-off later, queued once
    assert results[0].status == "failed"
    segment.refresh_from_db()
    assert segment.last_refresh_status == "failed"
    assert "terminat" in segment.last_refresh_error
    assert segment.refresh_running_since is None
    assert timedelta(seconds=55) < segment.refresh_retry_at - timezone.now() <= timedelta(seconds=60)
    assert watch_refreshes()["refreshes_retried"] == []
    later = timezone.now() + timedelta(seconds=61)
    assert watch_refreshes(now=later)["refreshes_retried"] == [segment.pk]
    assert watch_refreshes(now=later)["refreshes_retried"] == []
    assert _refresh_tasks() == [segment.pk]
    assert [r["status"] for r in refresh_segment_task(segment.pk)] == ["ok"]
    assert member_ids(segment) == {staying.pk}


@pytest.mark.django_db(transaction=True)
def test_two_watchdogs_at_once_fail_a_dead_refresh_once_and_queue_one_retry(fast):
    # given a refresh marked running by a worker that is gone (no such process, no such session)
    segment, _, _ = _hot_with_two_members()
    long_ago = timezone.now() - timedelta(minutes=5)
    Segment.objects.filter(pk=segment.pk).update(
        refresh_running_since=long_ago,
        refresh_heartbeat_at=long_ago,
        refresh_worker="gone-host:123",
        refresh_session="999999@0" if connection.vendor == "postgresql" else "",
    )
    start = threading.Barrier(2)
    outcomes = []

    def watchdog() -> None:
        try:
            start.wait(timeout=10)
            outcomes.append(watch_refreshes())
        finally:
            connection.close()

    # when two watchdogs look at the same moment
    threads = [threading.Thread(target=watchdog) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then one of them failed it and one retry is queued
    assert sorted(len(o["refreshes_failed"]) for o in outcomes) == [0, 1]
    assert sorted(len(o["refreshes_retried"]) for o in outcomes) in ([0, 1], [0, 0])
    segment.refresh_from_db()
    assert segment.refresh_failures == 1
    watch_refreshes()
    assert _refresh_tasks() == [segment.pk]


def test_retries_back_off_and_stop_after_the_last_attempt(db, settings):
    settings.RUN_RETRY_BACKOFF_SECONDS, settings.RUN_RETRY_MAX_BACKOFF_SECONDS = 60, 300
    settings.RUN_RETRY_MAX_ATTEMPTS = 4
    segment = save_segment(Segment(name="Hot", slug="hot", kind="dynamic", rule=HOT))
    Segment.objects.filter(pk=segment.pk).update(rule={"field": "lead_score", "op": "gte", "value": "x"})
    delays = []
    for _ in range(5):
        assert refresh_segment(segment.pk).status == "failed"
        segment.refresh_from_db()
        retry_at = segment.refresh_retry_at
        delays.append(round((retry_at - timezone.now()).total_seconds() / 60) if retry_at else None)
    assert delays == [1, 2, 4, 5, None]
    assert segment.refresh_failures == 5


def test_a_live_refresh_is_left_alone(db, fast):
    # given a refresh marked running by this very process, its heartbeat fresh
    segment = save_segment(Segment(name="Hot", slug="hot", kind="dynamic", rule=HOT))
    since = mark_running(segment.pk)

    # then the watchdog leaves it running, and a second refresh does not take its mark
    assert watch_refreshes()["refreshes_failed"] == []
    if connection.vendor == "postgresql":
        assert mark_running(segment.pk) is None
    assert Segment.objects.get(pk=segment.pk).refresh_running_since == since
    assert not Membership.objects.exists()


def test_the_page_the_api_and_the_admin_show_a_running_then_dead_refresh(db, fast, client, ops_user, api_client):
    segment = save_segment(Segment(name="Hot", slug="hot", kind="dynamic", rule=HOT))
    client.force_login(ops_user)
    api = api_client("segments:read")

    # a refresh running now, on this process
    mark_running(segment.pk)
    state = client.get(reverse("segments-status", args=[segment.pk])).json()
    assert state["running_since"] is not None
    assert state["note"].startswith("Running since ")
    assert f" on {worker_name()}; last heartbeat " in state["note"]
    assert api.get("/api/v1/segments/hot/").json()["refresh_worker"] == worker_name()
    assert "running since" in client.get(reverse("admin:segments_segment_changelist")).content.decode()
    assert "running" in client.get(reverse("segments-overview")).content.decode()

    # its worker gone (a session and a process that do not exist), the watchdog fails it
    Segment.objects.filter(pk=segment.pk).update(
        refresh_worker="gone-host:123", refresh_session="999999@0" if connection.vendor == "postgresql" else ""
    )
    Segment.objects.filter(pk=segment.pk).update(refresh_heartbeat_at=timezone.now() - timedelta(minutes=1))
    assert watch_refreshes(now=timezone.now() - timedelta(seconds=1))["refreshes_failed"] == [segment.pk]

    state = client.get(reverse("segments-status", args=[segment.pk])).json()
    assert (state["status"], state["running_since"], state["failures"]) == ("failed", None, 1)
    assert "the worker gone-host:123 stopped" in state["error"]
    assert state["note"].startswith("Failed once; tried again at ")
    page = client.get(reverse("segments-detail", args=[segment.pk])).content.decode()
    assert "the worker gone-host:123 stopped" in page
    assert "Failed once; tried again at" in page
    body = api.get("/api/v1/segments/hot/").json()
    assert (body["last_refresh_status"], body["refresh_running_since"], body["refresh_failures"]) == ("failed", None, 1)
    assert body["refresh_retry_at"] is not None
    assert "1 in a row; retry at" in client.get(reverse("admin:segments_segment_changelist")).content.decode()


def test_ensure_schedules_creates_the_watchdog_every_run_watch_minutes(db, settings):
    settings.RUN_WATCH_MINUTES = 2
    call_command("ensure_schedules", stdout=StringIO())
    call_command("ensure_schedules", stdout=StringIO())

    schedule = Schedule.objects.get(name=WATCH_SCHEDULE)
    assert (schedule.func, schedule.minutes, schedule.repeats) == ("segments.tasks.watch_runs_task", 2, -1)
    # and again half an interval later: the two together look every minute
    half = Schedule.objects.get(name=WATCH_HALF_SCHEDULE)
    assert (half.func, half.minutes, half.repeats) == ("segments.tasks.watch_runs_task", 2, -1)
    assert half.next_run - schedule.next_run == timedelta(minutes=1)


def test_the_two_watchdog_schedules_are_put_back_half_an_interval_apart_when_they_drift(db, settings):
    # Two watchdogs every minute, 30 s apart: a dead run is seen within ~30 s of django-q's
    # scheduler looking (it looks every 30 s), where one every minute left it up to 90 s.
    call_command("ensure_schedules", stdout=StringIO())
    first = Schedule.objects.get(name=WATCH_SCHEDULE)
    Schedule.objects.filter(name=WATCH_HALF_SCHEDULE).update(next_run=first.next_run + timedelta(seconds=3))

    call_command("ensure_schedules", stdout=StringIO())

    half = Schedule.objects.get(name=WATCH_HALF_SCHEDULE)
    assert half.next_run - Schedule.objects.get(name=WATCH_SCHEDULE).next_run == timedelta(seconds=30)
    # in phase, a later run keeps both next runs: a deploy neither postpones nor repeats a look
    first.refresh_from_db()
    Schedule.objects.filter(pk=first.pk).update(next_run=first.next_run + timedelta(minutes=3))
    Schedule.objects.filter(pk=half.pk).update(next_run=half.next_run + timedelta(minutes=5))
    call_command("ensure_schedules", stdout=StringIO())
    assert Schedule.objects.get(pk=first.pk).next_run == first.next_run + timedelta(minutes=3)
    assert Schedule.objects.get(pk=half.pk).next_run == half.next_run + timedelta(minutes=5)


def test_death_reads_the_session_where_the_database_can_say_and_else_the_heartbeat_and_process(settings):
    settings.RUN_DEAD_AFTER_SECONDS = 30
    now = timezone.now()
    stale, fresh = now - timedelta(seconds=31), now - timedelta(seconds=5)
    me, gone = worker_name(), "other-host:42"

    # PostgreSQL: an open session is alive whatever its heartbeat; a closed one is dead at once
    assert death(worker=gone, session="7@1.5", heartbeat_at=stale, now=now, sessions={"7@1.5"}) is None
    reason = death(worker=gone, session="7@1.5", heartbeat_at=fresh, now=now, sessions={"8@1.5"})
    assert reason == "the worker other-host:42 stopped: its database session (backend 7) ended"
    # no word from the database (SQLite, or sessions it hides): the heartbeat, then the process
    assert death(worker=gone, session="", heartbeat_at=fresh, now=now, sessions=None) is None
    assert death(worker=me, session="", heartbeat_at=stale, now=now, sessions=None) is None  # this process lives
    reason = death(worker=gone, session="7@1.5", heartbeat_at=stale, now=now, sessions=None)
    assert reason.startswith("the worker other-host:42 stopped: no heartbeat since ")
