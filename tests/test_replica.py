"""The read replica (crmseg_site/replicas.py) against a real streaming replica, and nothing routed without one.

CI starts a primary and a replica of it (.ci/pg-replica-pair) and runs this file with
DATABASE_URL and DATABASE_REPLICA_URL pointing at them. The test database pytest-django makes on
the primary reaches the replica by replication (settings: TEST MIRROR), so the tests that read the
replica commit their rows (transactional) and wait until the replica has replayed them.
"""

import logging
import os
import time

import pytest
from django.conf import settings
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from activation.exports import execute_run, start_run
from contacts.models import Contact
from crmseg_site import replicas
from crmseg_site.replicas import REPLICA, WROTE_AT_COOKIE, primary_lsn, replica_reads, replica_status
from segments.models import Membership
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory, SegmentFactory

with_replica = pytest.mark.skipif(
    not os.environ.get("DATABASE_REPLICA_URL"), reason="needs a streaming replica: DATABASE_REPLICA_URL (.ci/run)"
)
without_replica = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_REPLICA_URL")), reason="checks the set-up without DATABASE_REPLICA_URL"
)
on_replica = pytest.mark.django_db(transaction=True, databases=["default", "replica"])


@pytest.fixture
def checked_every_time(settings):
    """Each scope asks the replica afresh (no answer reused from another test)."""
    settings.REPLICA_CHECK_SECONDS = 0


def wait_for_replica(timeout: float = 10.0) -> None:
    """Until the replica has replayed everything committed on the primary so far."""
    lsn = primary_lsn()
    deadline = time.monotonic() + timeout
    while not replica_status(after_lsn=lsn).caught_up:
        assert time.monotonic() < deadline, f"the replica did not replay {lsn} within {timeout} s"
        time.sleep(0.02)


def replica_queries(client, url: str) -> tuple:
    with CaptureQueriesContext(connections[REPLICA]) as on_replica, CaptureQueriesContext(connection) as on_primary:
        response = client.get(url)
    return response, on_replica.captured_queries, on_primary.captured_queries


@pytest.fixture
def paused_replay():
    """WAL replay paused on the replica (it still receives WAL); resumed afterwards."""
    with connections[REPLICA].cursor() as cursor:
        cursor.execute("SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute("SELECT pg_wal_replay_resume()")


def wait_until_behind(timeout: float = 10.0) -> None:
    """Until the replica has received WAL it has not replayed (replay paused, primary written)."""
    deadline = time.monotonic() + timeout
    while True:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")
            if cursor.fetchone()[0]:
                return
        assert time.monotonic() < deadline, "the replica received nothing new"
        time.sleep(0.02)


@without_replica
@pytest.mark.django_db
def test_without_a_replica_nothing_is_routed(django_assert_num_queries):
    ContactFactory(email="ana@example.com")

    with django_assert_num_queries(1), replica_reads():
        found = Contact.objects.get(email="ana@example.com")

    assert "replica" not in settings.DATABASES
    assert settings.DATABASE_ROUTERS == []
    assert found._state.db == "default"


@without_replica
@pytest.mark.django_db
def test_the_database_page_says_there_is_no_replica(admin_client):
    response = admin_client.get(reverse("admin-database"))

    assert response.status_code == 200
    assert "None configured (DATABASE_REPLICA_URL is unset)" in response.content.decode()


@with_replica
@on_replica
def test_the_database_page_shows_the_replicas_lag(admin_client):
    response = admin_client.get(reverse("admin-database"))

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="replica-lag"' in page
    assert "use it" in page
    assert "streaming" in page  # the primary's pg_stat_replication row


@with_replica
@on_replica
def test_a_task_reads_replicated_rows_from_the_replica(checked_every_time):
    ContactFactory(email="ana@example.com", first_name="Ana")

    with replica_reads():  # a task's scope: waits until the replica has replayed the contact
        found = Contact.objects.get(email="ana@example.com")
        with connections[REPLICA].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            standby = cursor.fetchone()[0]

    assert found._state.db == REPLICA
    assert found.first_name == "Ana"
    assert standby


@with_replica
@on_replica
def test_a_contact_page_reads_the_replica(client, superuser, checked_every_time):
    contact = ContactFactory(first_name="Ana", last_name="Replica")
    client.force_login(superuser)
    wait_for_replica()

    response, on_replica_sql, on_primary_sql = replica_queries(client, reverse("contacts-detail", args=[contact.pk]))

    assert response.status_code == 200
    assert "Ana Replica" in response.content.decode()
    assert any("contacts_contact" in query["sql"] for query in on_replica_sql)
    assert not any("contacts_contact" in query["sql"] for query in on_primary_sql)


@with_replica
@on_replica
def test_after_a_write_the_same_work_reads_the_primary(checked_every_time):
    ContactFactory(email="ana@example.com")
    wait_for_replica()

    with replica_reads():
        before = Contact.objects.get(email="ana@example.com")
        Contact.objects.filter(pk=before.pk).update(first_name="Written")
        after = Contact.objects.get(pk=before.pk)

    assert before._state.db == REPLICA
    assert after._state.db == "default"
    assert after.first_name == "Written"


@with_replica
@on_replica
def test_raw_sql_writes_count_as_writes(checked_every_time):
    contact = ContactFactory(first_name="Ana")
    wait_for_replica()

    with replica_reads():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE contacts_contact SET first_name = 'Raw' WHERE id = %s", [contact.pk])
        after = Contact.objects.get(pk=contact.pk)

    assert after._state.db == "default"
    assert after.first_name == "Raw"


@with_replica
@on_replica
def test_a_request_that_wrote_sends_the_next_page_to_the_primary_until_the_replica_caught_up(
    client, superuser, checked_every_time, paused_replay
):
    segment = SegmentFactory(name="Replicated")
    contact = ContactFactory(first_name="Ana")
    client.force_login(superuser)

    # given: a request that writes (queues a refresh), while the replica replays nothing
    wrote = client.post(reverse("segments-refresh", args=[segment.pk]))
    Contact.objects.filter(pk=contact.pk).update(first_name="Edited")
    wait_until_behind()

    # when: the browser's next page, carrying the cookie
    response, on_replica_sql, _ = replica_queries(client, reverse("contacts-detail", args=[contact.pk]))

    # then: the primary served it, with the edit the replica has not replayed
    assert wrote.status_code == 200
    assert replicas.LSN.fullmatch(wrote.cookies[WROTE_AT_COOKIE].value)
    assert response.status_code == 200
    assert "Edited" in response.content.decode()
    assert not any("contacts_contact" in query["sql"] for query in on_replica_sql)


@with_replica
@on_replica
def test_a_lagging_replica_is_skipped_with_a_log_line(client, superuser, settings, caplog, paused_replay):
    settings.REPLICA_CHECK_SECONDS = 0
    settings.REPLICA_MAX_LAG_SECONDS = 0
    client.force_login(superuser)
    contact = ContactFactory(first_name="Only", last_name="OnThePrimary")  # never replayed: replay is paused
    wait_until_behind()

    with caplog.at_level(logging.WARNING, logger="crmseg_site.replicas"):
        response, on_replica_sql, _ = replica_queries(client, reverse("contacts-detail", args=[contact.pk]))

    assert response.status_code == 200
    assert "Only OnThePrimary" in response.content.decode()
    assert "REPLICA_MAX_LAG_SECONDS=0" in caplog.text
    assert "Read replica skipped: its replay lag of" in caplog.text
    assert not any("contacts_contact" in query["sql"] for query in on_replica_sql)


@with_replica
@on_replica
def test_a_task_waits_for_the_replica_then_reads_the_primary(checked_every_time, monkeypatch, caplog, paused_replay):
    monkeypatch.setattr(replicas, "CATCH_UP_WAIT_SECONDS", 0.3)
    ContactFactory(email="late@example.com")
    wait_until_behind()

    with caplog.at_level(logging.INFO, logger="crmseg_site.replicas"), replica_reads():
        found = Contact.objects.get(email="late@example.com")

    assert found._state.db == "default"
    assert "has not replayed" in caplog.text


@with_replica
@on_replica
def test_a_replica_that_is_down_is_skipped_with_a_log_line(client, superuser, checked_every_time, caplog):
    contact = ContactFactory(first_name="Ana", last_name="Down")
    client.force_login(superuser)
    replica = connections[REPLICA]
    port = replica.settings_dict["PORT"]
    replica.close()
    replica.settings_dict["PORT"] = "5436"  # nothing listens there: as a stopped replica
    try:
        with caplog.at_level(logging.WARNING, logger="crmseg_site.replicas"):
            response = client.get(reverse("contacts-detail", args=[contact.pk]))
    finally:
        replica.close()
        replica.settings_dict["PORT"] = port

    assert response.status_code == 200
    assert "Ana Down" in response.content.decode()
    assert "Read replica skipped: it does not answer" in caplog.text


@with_replica
@on_replica
def test_an_export_streams_its_audience_from_the_replica(settings, tmp_path, checked_every_time):
    settings.MEDIA_ROOT = tmp_path
    activation = ActivationFactory(mode="delta", destination=DestinationFactory(csv_columns=["email"]))
    a, b, c = ContactFactory.create_batch(3)
    Membership.objects.bulk_create(Membership(segment=activation.segment, contact=x) for x in (a, b))
    first = execute_run(start_run(activation).pk)
    Membership.objects.filter(segment=activation.segment, contact=b).delete()
    Membership.objects.create(segment=activation.segment, contact=c)

    with CaptureQueriesContext(connections[REPLICA]) as on_replica_sql:
        second = execute_run(start_run(activation).pk)

    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert (tmp_path / first.file_path).read_text().splitlines() == ["email", a.email, b.email]
    assert (tmp_path / second.file_path).read_text().splitlines() == ["email", c.email]
    assert (tmp_path / second.removed_file_path).read_text().splitlines() == ["email", b.email]
    assert any("contacts_contact" in query["sql"] for query in on_replica_sql.captured_queries)
