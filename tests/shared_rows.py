"""Rows made once for all the tests of a module, instead of once per test.

`made_once(django_db_blocker)` opens a transaction on the default database and keeps it open while
the module's tests run; pytest-django runs each test in a savepoint of it, so a test's own writes
are rolled back as usual and the next test finds the shared rows as they were made. The transaction
is rolled back after the last test. Only for modules whose tests all run in a transaction (no
`transaction=True`: a flush inside would empty the shared rows). A module-scoped fixture should
yield primary keys, and function-scoped fixtures read fresh objects from them, so that no test sees
another's changes to a Python object.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction
from django.test import TestCase


@contextmanager
def made_once(django_db_blocker) -> Iterator[None]:
    with django_db_blocker.unblock(), transaction.atomic():
        yield
        transaction.set_rollback(True)


def run_on_commit_hooks():
    """Inside `made_once`, nothing commits: this runs the hooks a block registers at its end, as a
    commit would (django_capture_on_commit_callbacks(execute=True) for a module-scoped fixture)."""
    return TestCase.captureOnCommitCallbacks(execute=True)
