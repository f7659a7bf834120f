"""Catch-ups that show (contacts/catch_up.py): the catch-up task records its worker and a heartbeat;
a dead one is failed with the reason within a minute, its contacts wait again, and it is retried
with back-off; a live one keeps its lease however long its round takes."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from contacts import changes, writes
from contacts.catch_up import catch_up, holder_death, watch_catch_up
from contacts.changes import request
from contacts.models import CatchUpState, Contact, PendingChange
from contacts.tasks import catch_up_task
from crmseg_site.liveness import current_session, worker_name
from segments.editing import save_segment
from segments.models import Segment
from segments.refresh import refresh_segment
from segments.watchdog import watch
from tests.factories import ContactFactory
from tests.processes import kill, python, qcluster, raw_postgres, wait_for
from tests.segments_support import member_ids

postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'")

HOT = {"field": "lead_score", "op": "gte", "value": 50}
GONE = "gone-host:123"

# A catch-up in another process that stops for good in its round, after the contacts' metrics and
# before their segments re-read them (a deriver registered after the product's own).
HANGING_CATCH_UP = """
import time
from contacts.catch_up import catch_up
from contacts.changes import add_deriver
def hang(contact_ids):
    print("deriving", flush=True)
    time.sleep(300)
add_deriver(hang)
catch_up()
"""


@pytest.fixture
def fast(settings):
    settings.RUN_HEARTBEAT_SECONDS = 1
    settings.RUN_DEAD_AFTER_SECONDS = 3
    settings.RUN_RETRY_BACKOFF_SECONDS = 0
    return settings


def _built(rule: dict) -> Segment:
    segment = save_segment(Segment(name="Hot", slug="hot", kind="dynamic", rule=rule))
    assert refresh_segment(segment.pk).status == "ok"
    return segment


def _hot_with_two_members() -> tuple[Segment, Contact, Contact]:
    """A built segment of two contacts; a write then takes one below its rule (waiting to be caught up)."""
    staying, leaving = ContactFactory(lead_score=80), ContactFactory(lead_score=80)
    segment = _built(HOT)
    writes.update(Contact.objects.filter(pk=leaving.pk), lead_score=10)
    OrmQ.objects.all().delete()
    CatchUpState.objects.update(queued_at=None)  # the write's catch-up task, deleted with the queue
    return segment, staying, leaving


def _dead_holder(**fields: object) -> uuid.UUID:
    """The lease held by a task whose worker is gone: no such process here, no such database session."""
    long_ago = timezone.now() - timedelta(minutes=5)
    runner = uuid.uuid4()
    session = "999999@0" if connection.vendor == "postgresql" else ""
    defaults = {"running_since": long_ago, "heartbeat_at": long_ago, "worker": GONE, "session": session}
    CatchUpState.objects.update_or_create(pk=1, defaults={"runner": runner, **defaults, **fields})
    return runner


def _catch_up_tasks() -> int:
    return sum(row.task["func"] == "contacts.tasks.catch_up_task" for row in OrmQ.objects.all())


def _dead_reason() -> str:
    if connection.vendor == "postgresql":
        return f"the worker {GONE} stopped: its database session (backend 999999) ended"
    return f"the worker {GONE} stopped: no heartbeat since "


def test_a_live_catch_up_keeps_its_lease_however_long_its_round_takes(db, fast):
    # given the lease held by this very process (its session open) for ten minutes, silent as long
    contact = ContactFactory()
    long_ago = timezone.now() - timedelta(minutes=10)
    runner = uuid.uuid4()
    CatchUpState.objects.create(
        pk=1,
        runner=runner,
        running_since=long_ago,
        heartbeat_at=long_ago,
        worker=worker_name(),
        session=current_session(),
    )
    PendingChange.objects.create(contact_id=contact.pk, derive=True, claim=runner, claimed_at=long_ago)

    # when another catch-up starts and the watchdog looks
    done = catch_up()
    outcome = watch_catch_up(timezone.now())

    # then the holder keeps its lease and its contact, and nothing is failed
    assert done.skipped
    assert outcome == {"catch_up_failed": False, "catch_up_retried": False}
    held = CatchUpState.objects.get()
    assert (held.runner, held.failures, held.last_error) == (runner, 0, "")
    assert PendingChange.objects.get().claim == runner


def test_the_watchdog_fails_a_dead_catch_up_puts_its_contacts_back_and_retries_it_once(db, fast):
    # given a dead task's lease and claimed rows, the second death in a row (a first is retried at
    # once: test_a_first_death_is_retried_at_once); one of its contacts changed again meanwhile (waits twice)
    fast.RUN_RETRY_BACKOFF_SECONDS = 60
    hot = _built(HOT)
    changed, rederived = ContactFactory(lead_score=10), ContactFactory(lead_score=10)
    Contact.objects.filter(pk__in=[changed.pk, rederived.pk]).update(lead_score=90)  # announced below
    dead = _dead_holder(failures=1)
    PendingChange.objects.all().delete()
    PendingChange.objects.create(contact_id=changed.pk, derive=True, claim=dead, claimed_at=timezone.now())
    PendingChange.objects.create(contact_id=rederived.pk, derive=False, claim=dead, claimed_at=timezone.now())
    PendingChange.objects.create(contact_id=rederived.pk, derive=False)
    OrmQ.objects.all().delete()

    # when the watchdog looks
    now = timezone.now()
    outcome = watch(now)

    # then the catch-up shows failed and why, the lease is free, every contact waits (once) again
    assert (outcome["catch_up_failed"], outcome["catch_up_retried"]) == (True, False)
    held = CatchUpState.objects.get()
    assert (held.runner, held.running_since, held.worker, held.failures) == (None, None, "", 2)
    assert held.last_error.startswith("The catch-up started ")
    assert f"did not finish: {_dead_reason()}" in held.last_error
    assert timedelta(seconds=55) < held.retry_at - now <= timedelta(seconds=61)
    waiting = PendingChange.objects.values_list("contact_id", "derive", "claim")
    assert sorted(waiting) == sorted([(changed.pk, True, None), (rederived.pk, False, None)])

    # and nothing runs before the retry: a second look fails nothing, no task takes the lease, writes queue none
    assert watch_catch_up(now) == {"catch_up_failed": False, "catch_up_retried": False}
    assert catch_up().skipped
    assert request() is False
    assert _catch_up_tasks() == 0

    # the retry is queued once when due, and it catches up every contact
    later = now + timedelta(seconds=61)
    assert watch_catch_up(later)["catch_up_retried"] is True
    assert watch_catch_up(later)["catch_up_retried"] is False
    assert _catch_up_tasks() == 1
    assert catch_up_task()["contacts"] == 2
    assert member_ids(hot) == {changed.pk, rederived.pk}
    held.refresh_from_db()
    assert (held.runner, held.failures, held.retry_at) == (None, 0, None)
    assert _dead_reason() in held.last_error  # the last failure stays on show
    assert not PendingChange.objects.exists()


def _waits_for_a_row_lock(pid: int) -> bool:
    """Another session than `pid` waits for a transaction (an uncommitted row it would conflict with)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE NOT granted AND locktype = 'transactionid' AND pid <> %s)",
            [pid],
        )
        return cursor.fetchone()[0]


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_putting_a_dead_catch_ups_contacts_back_never_deadlocks_with_a_write():
    # given a dead task's claimed rows, the higher contact stored first (a pass in storage order meets
    # it first), and a write that has announced the lower contact and not committed yet: at 1M
    # contacts under 50 clients the two deadlocked (a 500 on ingest, the watchdog's run failed)
    low, high = ContactFactory(), ContactFactory()
    dead = _dead_holder()
    PendingChange.objects.all().delete()
    for contact in (high, low):
        PendingChange.objects.create(contact_id=contact.pk, derive=True, claim=dead, claimed_at=timezone.now())
    announced, errors = threading.Event(), []

    def write() -> None:
        try:
            with transaction.atomic():
                changes.contacts_changed([low.pk])
                announced.set()
                # the watchdog's statement now waits for this write's row of the lower contact
                wait_for(lambda: _waits_for_a_row_lock(connection.connection.info.backend_pid), timeout=10)
                changes.contacts_changed([high.pk])
        except Exception as error:  # the test reports it below
            errors.append(error)
        finally:
            connection.close()

    writer = threading.Thread(target=write)
    writer.start()
    assert announced.wait(10)

    # when the watchdog fails the dead task meanwhile
    outcome = watch_catch_up(timezone.now())
    writer.join(20)

    # then neither waits for the other for good: both finish, and each contact waits once
    assert errors == []
    assert outcome["catch_up_failed"] is True
    waiting = PendingChange.objects.values_list("contact_id", "claim")
    assert sorted(waiting) == sorted([(low.pk, None), (high.pk, None)])


def test_a_catch_up_finding_the_lease_of_a_task_of_the_previous_version_expired_takes_over(db, fast):
    # given a lease taken by a task that recorded no worker (before this version) and went silent
    contact = ContactFactory(lead_score=10)
    hot = _built(HOT)
    Contact.objects.filter(pk=contact.pk).update(lead_score=70)  # the write recorded the row below
    expired = timezone.now() - timedelta(seconds=fast.CATCH_UP_LEASE_SECONDS + 1)
    old = uuid.uuid4()
    CatchUpState.objects.create(pk=1, runner=old, running_since=expired)
    PendingChange.objects.create(contact_id=contact.pk, derive=True, claim=old, claimed_at=expired)

    # when a catch-up starts (no back-off)
    done = catch_up()

    # then it failed the silent task, took the lease and caught up its contact
    assert (done.skipped, done.contacts) == (False, 1)
    assert member_ids(hot) == {contact.pk}
    assert not PendingChange.objects.exists()
    assert "its task recorded no worker and has renewed no lease for 120 s" in CatchUpState.objects.get().last_error


def test_a_catch_up_that_raises_shows_failed_and_its_contacts_wait_again(db, fast, monkeypatch):
    contact = ContactFactory(lead_score=10)
    hot = _built(HOT)
    writes.update(Contact.objects.filter(pk=contact.pk), lead_score=70)

    def broken(contact_ids: list[int]) -> None:
        raise RuntimeError("the scoring service is down")

    monkeypatch.setattr(changes, "_derivers", [*changes.derivers(), broken])
    with pytest.raises(RuntimeError):
        catch_up()

    held = CatchUpState.objects.get()
    assert (held.runner, held.failures) == (None, 1)
    assert "failed: RuntimeError: the scoring service is down" in held.last_error
    assert set(PendingChange.objects.values_list("contact_id", "claim")) == {(contact.pk, None)}

    monkeypatch.setattr(changes, "_derivers", [d for d in changes.derivers() if d is not broken])
    assert catch_up().contacts == 1
    assert member_ids(hot) == {contact.pk}


def test_a_first_death_is_retried_at_once(db, settings):
    # A dead worker is no fault of the work: the watchdog that fails it queues the retry in the same pass.
    settings.RUN_RETRY_BACKOFF_SECONDS = 60
    contact = ContactFactory()
    _dead_holder()
    PendingChange.objects.create(contact_id=contact.pk, derive=True)
    OrmQ.objects.all().delete()
    now = timezone.now()

    assert watch_catch_up(now) == {"catch_up_failed": True, "catch_up_retried": True}

    held = CatchUpState.objects.get()
    assert (held.runner, held.failures, held.retry_at) == (None, 1, None)
    assert _catch_up_tasks() == 1
    assert catch_up_task()["contacts"] == 1


def test_deaths_in_a_row_back_off_and_keep_the_longest_delay_past_the_last_attempt(db, settings):
    # The catch-up is never given up: every write waits on it. The first death is retried at once.
    settings.RUN_RETRY_BACKOFF_SECONDS, settings.RUN_RETRY_MAX_BACKOFF_SECONDS = 60, 300
    settings.RUN_RETRY_MAX_ATTEMPTS = 3
    delays = []
    for _ in range(5):
        _dead_holder()
        now = timezone.now()
        outcome = watch_catch_up(now)
        assert outcome["catch_up_failed"]
        retry_at = CatchUpState.objects.get().retry_at
        if outcome["catch_up_retried"]:  # at once: queued in the same pass
            assert retry_at is None
            delays.append(0)
        else:
            delays.append(round((retry_at - now).total_seconds() / 60))
    assert delays == [0, 1, 2, 4, 4]
    assert CatchUpState.objects.get().failures == 5


def test_a_write_queues_no_catch_up_while_the_holder_beats_or_before_a_retry(db, settings):
    # given a task running for ten minutes whose heartbeat is fresh
    now = timezone.now()
    CatchUpState.objects.create(
        pk=1, runner=uuid.uuid4(), running_since=now - timedelta(minutes=10), heartbeat_at=now, worker=GONE
    )
    assert request() is False
    # silent for the lease's length: maybe lost, one more is queued (it ends at once if the holder lives)
    CatchUpState.objects.update(heartbeat_at=now - timedelta(seconds=settings.CATCH_UP_LEASE_SECONDS + 1))
    assert request() is True
    # after a failure, none before its retry (the watchdog queues that)
    CatchUpState.objects.update(runner=None, running_since=None, queued_at=None, retry_at=now + timedelta(minutes=1))
    assert request() is False
    CatchUpState.objects.update(retry_at=now)
    assert request() is True
    assert _catch_up_tasks() == 2


def test_a_holder_is_dead_by_its_session_or_by_a_long_silence_of_a_process_not_known_alive(settings):
    settings.RUN_DEAD_AFTER_SECONDS, settings.CATCH_UP_LEASE_SECONDS = 30, 120
    now = timezone.now()
    fresh, stale, silent = (now - timedelta(seconds=s) for s in (5, 31, 121))

    def dead(*, worker: str = GONE, session: str = "7@1.5", beat=fresh, sessions=None, since=now) -> str | None:
        held = CatchUpState(runner=uuid.uuid4(), running_since=since, heartbeat_at=beat, worker=worker, session=session)
        return holder_death(held, now=now, sessions=sessions)

    # PostgreSQL: an open session lives on, however long its round; a closed one is dead at once
    assert dead(beat=stale, sessions={"7@1.5"}) is None
    assert dead(sessions={"8@1.5"}) == f"the worker {GONE} stopped: its database session (backend 7) ended"
    # ... unless nothing was heard for the lease's length from a process not known alive (a pooler's session)
    assert dead(beat=silent, sessions={"7@1.5"}).startswith(f"the worker {GONE} stopped: no heartbeat since ")
    assert dead(worker=worker_name(), beat=silent, sessions={"7@1.5"}) is None
    # no word from the database (SQLite): the heartbeat, then the process
    assert dead(sessions=None) is None
    assert dead(worker=worker_name(), beat=silent) is None
    assert dead(beat=stale).startswith(f"the worker {GONE} stopped: no heartbeat since ")
    # a lease taken by the previous version (no worker): its own rule
    assert dead(worker="", session="", beat=None, since=fresh) is None
    assert dead(worker="", session="", beat=None, since=silent).endswith("has renewed no lease for 120 s")


def test_the_databases_page_shows_the_catch_up_running_then_failed(db, fast, admin_client):
    contact = ContactFactory()
    writes.update(Contact.objects.filter(pk=contact.pk), lead_score=70)
    runner = _dead_holder(worker=worker_name(), session=current_session(), heartbeat_at=timezone.now())
    PendingChange.objects.update(claim=runner)

    def section(row: str) -> str:
        page = admin_client.get(reverse("admin-database")).content.decode()
        return page.split(f'id="catch-up-{row}">', 1)[1].split("</td>", 1)[0]

    assert section("waiting") == "1"
    assert section("running").startswith("since ")
    assert f"on {worker_name()}, last heartbeat " in section("running")
    assert "looks dead" not in section("running")
    assert section("failure") == "none"

    # its worker gone (the second death in a row, so the retry waits): the page says so before the
    # watchdog looks, and after it the failure and why
    _dead_holder(failures=1)
    assert f"looks dead: {_dead_reason()}" in section("running")
    fast.RUN_RETRY_BACKOFF_SECONDS = 60
    assert watch_catch_up(timezone.now())["catch_up_failed"]
    assert section("running") == "no"
    assert _dead_reason() in section("failure")
    assert "2 in a row</strong>; no task runs before " in section("failure")
    assert section("waiting") == "1"


@pytest.mark.django_db(transaction=True)
def test_a_catch_up_process_killed_mid_round_shows_failed_and_the_retry_catches_up(fast):
    # given another process catching up, stopped for good after the metrics of the changed contact
    segment, staying, leaving = _hot_with_two_members()
    with python(HANGING_CATCH_UP) as process:
        assert process.stdout.readline().strip() == "deriving"
        running = CatchUpState.objects.get()
        assert running.worker.endswith(f":{process.pid}")
        assert PendingChange.objects.get(derive=True).claim == running.runner  # the metrics' own row waits
        wait_for(lambda: CatchUpState.objects.filter(heartbeat_at__gt=running.running_since), what="a heartbeat")
        kill(process.pid)
        process.wait()

    # when the watchdog looks (PostgreSQL: the session is gone; SQLite: no heartbeat, no process)
    outcome = wait_for(lambda: _failed_by(watch(timezone.now())), timeout=20, what="the watchdog")

    # then it shows failed and why, its contact waits again, and the retry (queued at once) catches it up
    assert outcome["catch_up_retried"] is True
    held = CatchUpState.objects.get()
    assert (held.runner, held.failures) == (None, 1)
    reason = "its database session" if connection.vendor == "postgresql" else "no heartbeat since"
    assert f"did not finish: the worker {running.worker} stopped: {reason}" in held.last_error
    assert set(PendingChange.objects.values_list("contact_id", "claim")) == {(leaving.pk, None)}
    assert member_ids(segment) == {staying.pk, leaving.pk}
    assert watch(timezone.now())["catch_up_retried"] is False  # queued once
    assert _catch_up_tasks() == 1
    assert catch_up_task()["contacts"] == 1
    assert member_ids(segment) == {staying.pk}
    assert not PendingChange.objects.exists()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_catch_up_shows_failed_and_a_new_worker_catches_up(fast):
    # given a qcluster worker catching up, stuck taking the changed contact out of its segment (we hold the row)
    segment, staying, leaving = _hot_with_two_members()
    Schedule.objects.all().delete()  # no watchdog or catch-up of the cluster's own: this test looks
    with raw_postgres() as holder, qcluster():  # the holder's connection closes whatever happens
        holder.execute(
            "SELECT 1 FROM segments_membership WHERE segment_id = %s AND contact_id = %s FOR UPDATE",
            [segment.pk, leaving.pk],
        )
        assert request() is True
        running = wait_for(lambda: CatchUpState.objects.filter(runner__isnull=False).first(), what="the catch-up")
        wait_for(lambda: _waiting_for_a_lock(), what="the worker to wait for the membership row")
        # its heartbeat goes on while it waits, far beyond its round's start
        wait_for(lambda: CatchUpState.objects.filter(heartbeat_at__gt=running.running_since), what="a heartbeat")
        assert set(PendingChange.objects.values_list("contact_id", "claim")) == {(leaving.pk, running.runner)}

        # when that worker is killed
        kill(int(running.worker.rpartition(":")[2]))
        outcome = wait_for(lambda: _failed_by(watch(timezone.now())), timeout=20, what="the watchdog")

        # then the catch-up shows failed and why, the dead task's hold on the contact is gone, and the
        # retry is queued at once, once (the worker that replaced the dead one may already be taking it)
        assert outcome["catch_up_retried"] is True
        held = CatchUpState.objects.get()
        assert held.runner != running.runner
        assert held.failures == 1 or held.runner is not None  # a new task resets it only when done
        assert f"the worker {running.worker} stopped: its database session" in held.last_error
        assert set(PendingChange.objects.values_list("contact_id", flat=True)) == {leaving.pk}
        assert not PendingChange.objects.filter(claim=running.runner).exists()
        assert watch(timezone.now())["catch_up_retried"] is False

        # and the worker that replaced the dead one catches up once the row is free
        holder.rollback()
        wait_for(lambda: member_ids(segment) == {staying.pk}, what="the retried catch-up")
        wait_for(lambda: not PendingChange.objects.exists() and CatchUpState.objects.get().runner is None)
    held = CatchUpState.objects.get()
    assert (held.failures, held.retry_at) == (0, None)


def _failed_by(outcome: dict) -> dict | None:
    """The watchdog's outcome if it failed the catch-up in that pass (for wait_for)."""
    return outcome if outcome["catch_up_failed"] else None


def _waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0
