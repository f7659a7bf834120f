"""Metrics runs on real connections in real threads: one at a time."""

import threading

import pytest
from django.db import connection, connections, transaction

from contacts.metrics.compute import METRICS_LOCK_KEY, compute_metrics
from contacts.models import ContactMetrics
from tests.factories import ContactFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serialises write transactions itself"),
]


def test_a_metrics_run_waits_for_the_one_in_progress():
    contact = ContactFactory()
    finished: list = []

    def incremental_run() -> None:
        try:
            finished.append(compute_metrics(contact_ids=[contact.pk]))
        finally:
            connections.close_all()

    other = threading.Thread(target=incremental_run)
    with transaction.atomic():
        with connection.cursor() as cursor:  # a full run in progress holds this lock until it commits
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [METRICS_LOCK_KEY])
        other.start()
        other.join(timeout=1)
        assert other.is_alive(), "the second run did not wait for the first"
        assert not finished
    other.join(timeout=30)

    assert len(finished) == 1
    assert ContactMetrics.objects.filter(contact=contact).exists()
