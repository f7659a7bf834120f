"""Export runs that show: a worker killed mid-export leaves a run failed with the reason, not
"running", within seconds; a failed run is retried with back-off, once however many watchdogs look."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from activation import formats
from activation.exports import execute_run, start_run
from activation.models import ExportedMember, ExportRun, ExportRunMember
from activation.run_watch import watch_exports
from activation.tasks import run_export
from segments.models import Membership
from segments.watchdog import watch
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory
from tests.processes import kill, python, raw_postgres, wait_for

# Export a run in another process, stopping for good in the middle of writing its file.
HANGING_EXPORT = """
import sys, time
from activation import formats
def hang(contact, column):
    print("writing", flush=True)
    time.sleep(300)
formats._csv_cell = hang
from activation.exports import execute_run
execute_run(int(sys.argv[1]))
"""


@pytest.fixture
def fast(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.RUN_HEARTBEAT_SECONDS = 1
    settings.RUN_DEAD_AFTER_SECONDS = 3
    settings.RUN_RETRY_BACKOFF_SECONDS = 0
    return settings


def _activation_of(*emails: str):
    activation = ActivationFactory(destination=DestinationFactory(csv_columns=["email"]))
    contacts = [ContactFactory(email=email) for email in emails]
    Membership.objects.bulk_create(Membership(segment=activation.segment, contact=c) for c in contacts)
    return activation


def _failing(outcome: dict) -> dict | None:
    return outcome if outcome["exports_failed"] else None


def _queued_runs() -> list[int]:
    return [t.task["args"][0] for t in OrmQ.objects.all() if t.task["func"] == "activation.tasks.run_export"]


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_export_shows_failed_with_the_reason_and_the_retry_exports(fast, tmp_path):
    # given another process exporting a run, killed half-way through writing the file
    activation = _activation_of("a@example.com", "b@example.com")
    run = start_run(activation)
    with python(HANGING_EXPORT, run.pk, MEDIA_ROOT=tmp_path) as process:
        assert process.stdout.readline().strip() == "writing"
        running = ExportRun.objects.get(pk=run.pk)
        assert (running.status, running.worker) == ("running", f"{running.worker.rpartition(':')[0]}:{process.pid}")
        assert list(tmp_path.glob("exports/*/*.part"))
        kill(process.pid)
        process.wait()

    # when the watchdog looks (PostgreSQL: the session is gone; SQLite: no heartbeat, no process)
    OrmQ.objects.all().delete()
    outcome = wait_for(lambda: _failing(watch(timezone.now())), timeout=20, what="the watchdog")

    # then the run shows failed and why, its half-written file and staged members are gone
    assert outcome["exports_failed"] == [run.pk]
    run.refresh_from_db()
    assert run.status == "failed"
    reason = "its database session" if connection.vendor == "postgresql" else "no heartbeat since"
    assert "Attempt 1, started " in run.error
    assert f"did not finish: the worker {running.worker} stopped: {reason}" in run.error
    assert not list(tmp_path.glob("exports/*/*.part"))
    assert not ExportRunMember.objects.filter(run=run).exists()

    # and the retry (no back-off here), queued once, exports everyone
    assert outcome["exports_retried"] == [run.pk]
    assert watch_exports(timezone.now())["exports_retried"] == []
    assert _queued_runs() == [run.pk]
    run_export(run.pk)
    run.refresh_from_db()
    assert (run.status, run.attempts, run.exported_count, run.error) == ("succeeded", 2, 2, "")
    assert (tmp_path / run.file_path).read_text().splitlines() == ["email", "a@example.com", "b@example.com"]


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.django_db(transaction=True)
def test_an_export_whose_connection_is_terminated_fails_and_is_retried_with_back_off(fast, monkeypatch):
    # given an export (in a thread: a connection of its own) half-way through its file
    fast.RUN_RETRY_BACKOFF_SECONDS = 60
    activation = _activation_of("a@example.com")
    run = start_run(activation)
    writing, terminated = threading.Event(), threading.Event()
    cell = formats._csv_cell

    def slow_cell(contact, column):
        writing.set()
        assert terminated.wait(timeout=30)
        return cell(contact, column)

    monkeypatch.setattr(formats, "_csv_cell", slow_cell)
    worker = threading.Thread(target=lambda: (execute_run(run.pk), connection.close()))
    worker.start()
    assert writing.wait(timeout=30)

    # when its database connection is terminated
    backend = int(ExportRun.objects.get(pk=run.pk).session.partition("@")[0])
    holder = raw_postgres()
    holder.execute("SELECT pg_terminate_backend(%s)", [backend])
    holder.close()
    monkeypatch.setattr(formats, "_csv_cell", cell)
    terminated.set()
    worker.join(timeout=30)

    # then it shows failed, with a retry a back-off later (queued once when due), and the retry exports
    run.refresh_from_db()
    assert run.status == "failed"
    assert timedelta(seconds=55) < run.retry_at - timezone.now() <= timedelta(seconds=60)
    assert watch_exports(timezone.now())["exports_retried"] == []
    later = timezone.now() + timedelta(seconds=61)
    OrmQ.objects.all().delete()
    assert watch_exports(later)["exports_retried"] == [run.pk]
    assert watch_exports(later)["exports_retried"] == []
    assert _queued_runs() == [run.pk]
    run_export(run.pk)
    run.refresh_from_db()
    assert (run.status, run.exported_count) == ("succeeded", 1)


@pytest.mark.django_db(transaction=True)
def test_two_watchdogs_fail_a_dead_run_once_and_queue_its_retry_once(fast):
    activation = _activation_of("a@example.com")
    run = start_run(activation)
    long_ago = timezone.now() - timedelta(minutes=5)
    ExportRun.objects.filter(pk=run.pk).update(
        status="running", started_at=long_ago, heartbeat_at=long_ago, worker="gone-host:1", attempts=1
    )
    OrmQ.objects.all().delete()
    start = threading.Barrier(2)
    outcomes = []

    def watchdog() -> None:
        try:
            start.wait(timeout=10)
            outcomes.append(watch_exports(timezone.now()))
        finally:
            connection.close()

    threads = [threading.Thread(target=watchdog) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(len(o["exports_failed"]) for o in outcomes) == [0, 1]
    watch_exports(timezone.now())
    assert _queued_runs() == [run.pk]


def test_a_refused_run_is_not_retried(db, fast):
    activation = _activation_of("a@example.com")
    activation.segment.status = "archived"
    activation.segment.save()

    run = execute_run(start_run(activation).pk)

    assert run.status == "failed"
    assert "archived" in run.error
    assert run.retry_at is None


def test_the_admin_and_the_api_show_who_runs_an_export_and_when_a_failed_one_is_retried(
    db, fast, client, superuser, api_client
):
    fast.RUN_RETRY_BACKOFF_SECONDS = 60
    activation = _activation_of("a@example.com")
    run = start_run(activation)
    long_ago = timezone.now() - timedelta(minutes=5)
    ExportRun.objects.filter(pk=run.pk).update(
        status="running", started_at=long_ago, heartbeat_at=long_ago, worker="gone-host:1", attempts=1
    )
    client.force_login(superuser)
    api = api_client("activations:run")

    assert "running since" in client.get(reverse("admin:activation_exportrun_changelist")).text
    assert api.get(f"/api/v1/export-runs/{run.pk}/").json()["worker"] == "gone-host:1"

    watch_exports(timezone.now())

    body = api.get(f"/api/v1/export-runs/{run.pk}/").json()
    assert body["status"] == "failed"
    assert "did not finish: the worker gone-host:1 stopped: no heartbeat since" in body["error"]
    assert body["retry_at"] is not None
    assert "failed</span> (retry at " in client.get(reverse("admin:activation_exportrun_changelist")).text


def test_an_attempt_the_watchdog_failed_while_it_ran_keeps_nothing_when_it_finishes(db, fast, monkeypatch):
    # Its heartbeat looked dead (a stalled host, say), the watchdog failed the attempt, and then the
    # attempt finished after all: the run stays failed as the watchdog left it, with nothing of this
    # attempt in the snapshot, so the retry sends the members again.
    activation = _activation_of("a@example.com", "b@example.com")
    run = start_run(activation)
    write_cell = formats._csv_cell

    def watchdog_fails_the_attempt(contact, column):
        ExportRun.objects.filter(pk=run.pk, status="running").update(status="failed", error="the watchdog said so")
        return write_cell(contact, column)

    monkeypatch.setattr(formats, "_csv_cell", watchdog_fails_the_attempt)

    run = execute_run(run.pk)

    assert (run.status, run.error, run.attempts) == ("failed", "the watchdog said so", 1)
    assert not ExportedMember.objects.filter(activation=activation).exists()
    monkeypatch.setattr(formats, "_csv_cell", write_cell)
    run = execute_run(run.pk)  # the retry
    assert (run.status, run.exported_count, run.attempts) == ("succeeded", 2, 2)
    assert ExportedMember.objects.filter(activation=activation).count() == 2
