"""enqueue_with_commit: a task that exists only if the work it follows commits."""

import copy

import pytest
from django.db import transaction
from django_q.models import OrmQ

from crmseg_site.queueing import broker_in_database, enqueue_with_commit

TASK = "segments.tasks.describe_changes_task"


def test_with_the_database_as_broker_the_task_is_written_in_the_transaction(db):
    assert broker_in_database()

    with transaction.atomic():
        enqueue_with_commit(TASK, [1], group="segment-details")
        assert [q.task["func"] for q in OrmQ.objects.all()] == [TASK]  # before any commit
        transaction.set_rollback(True)

    assert not OrmQ.objects.exists()  # rolled back with the work


def test_a_committed_transaction_keeps_its_task(db):
    with transaction.atomic():
        enqueue_with_commit(TASK, [1], group="segment-details")

    assert [(q.task["func"], q.task["args"]) for q in OrmQ.objects.all()] == [(TASK, ([1],))]


@pytest.fixture
def redis_broker(settings):
    cluster = copy.deepcopy(settings.Q_CLUSTER)
    cluster.pop("orm", None)
    cluster["redis"] = "redis://127.0.0.1:6379/15"
    settings.Q_CLUSTER = cluster


def test_with_another_broker_the_task_waits_for_the_commit(db, redis_broker, django_capture_on_commit_callbacks):
    assert not broker_in_database()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        enqueue_with_commit(TASK, [1], group="segment-details")

    assert len(callbacks) == 1  # queued by the callback once the transaction commits, not before
    assert not OrmQ.objects.exists()
