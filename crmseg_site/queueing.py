"""Queueing a django-q2 task for work that must be committed before the task runs.

`enqueue_with_commit(func, *args, **kwargs)`: with the database as the broker (the embedded
default, no REDIS_URL) the task's row is written inside the current transaction, so it commits
with the work or not at all: no commit of its own (a one-contact refresh paid one more WAL flush
for it), and no task lost to a process that dies between its commit and the queueing. With Redis
as the broker the task is queued once the transaction commits (a worker could otherwise run it
before the work is visible). Outside a transaction both queue at once.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django_q.tasks import async_task


def broker_in_database() -> bool:
    """Whether django-q2 keeps its queue in the default database (the ORM broker)."""
    return settings.Q_CLUSTER.get("orm") == DEFAULT_DB_ALIAS


def enqueue_with_commit(func: str, *args: Any, **kwargs: Any) -> None:
    """Queue `func(*args)` (django-q2 options in `kwargs`) so that it exists only if the current
    transaction commits, and runs only after it has."""
    if broker_in_database():
        async_task(func, *args, **kwargs)
    else:
        transaction.on_commit(lambda: async_task(func, *args, **kwargs))
