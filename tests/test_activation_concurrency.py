"""Two workers, two real database connections: runs of one activation never overlap."""

import threading

import pytest
from django.db import connection

from activation import formats
from activation.exports import execute_run, start_run
from activation.models import ExportRun
from segments.models import Membership
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory


@pytest.mark.django_db(transaction=True)
def test_a_second_worker_cannot_start_a_run_while_the_first_is_writing(settings, tmp_path, monkeypatch):
    # given two queued runs of one activation
    settings.MEDIA_ROOT = tmp_path
    activation = ActivationFactory(destination=DestinationFactory(csv_columns=["email"]))
    Membership.objects.bulk_create(
        Membership(segment=activation.segment, contact=c) for c in ContactFactory.create_batch(3)
    )
    first, second = start_run(activation), start_run(activation)
    writing, release = threading.Event(), threading.Event()
    original = formats._csv_cell

    def slow_cell(contact, column):
        writing.set()
        assert release.wait(timeout=30), "the test never released the first worker"
        return original(contact, column)

    monkeypatch.setattr(formats, "_csv_cell", slow_cell)

    def worker(run_id: int) -> None:
        try:
            execute_run(run_id)
        finally:
            connection.close()

    # when worker one is half-way through its file and worker two starts the other run
    one = threading.Thread(target=worker, args=[first.pk])
    one.start()
    assert writing.wait(timeout=30)
    monkeypatch.setattr(formats, "_csv_cell", original)
    two = threading.Thread(target=worker, args=[second.pk])
    two.start()
    two.join(timeout=30)
    release.set()
    one.join(timeout=30)

    # then the second refused to start and the first finished normally
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.exported_count) == ("succeeded", 3)
    assert (second.status, second.attempts) == ("failed", 0)
    assert second.error == f"Run {first.pk} of this activation is still running; runs of one activation never overlap."
    assert ExportRun.objects.filter(status="running").count() == 0
