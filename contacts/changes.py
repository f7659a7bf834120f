"""Announce that contacts (or data derived from them) changed, so that what derives from them
(metrics, scores) and what reads them (segments) catch up, a burst of writes at a time.

`contacts` knows nothing of segments. Code that writes contacts, companies or activities calls
`contacts_changed(ids)` explicitly (contacts/writes.py). The ids are stored as PendingChange rows in
the writing transaction, and once it commits one catch-up task is queued unless one is queued or
running already (`request`). That task (contacts/catch_up.py) hands every waiting contact to the
*derivers* registered here (metrics, then propensity scores), then to the *readers* (segments
refresh them), so a thousand writes in a second are one metrics run and one scoped refresh.

`metrics_changed(ids)` announces that only derived data changed (a metrics or scoring run for some
contacts): readers re-read those contacts, derivers are not asked again. A run for everyone
(`metrics_changed(None)`) goes to the metrics listeners instead (segments refresh their readers of
`metrics.*`), after commit.
"""

from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.tasks import async_task
from psycopg import sql

from contacts.models import CatchUpState, PendingChange

# The catch-up task (contacts/tasks.py), as django-q names it.
CATCH_UP_TASK = "contacts.tasks.catch_up_task"
INSERT_BATCH = 5000

Listener = Callable[[list[int]], object]
_derivers: list[Listener] = []
_readers: list[Listener] = []


def add_deriver(listener: Listener) -> None:
    """Recomputes data derived from contacts (called first, in registration order, with changed contacts)."""
    if listener not in _derivers:
        _derivers.append(listener)


def add_reader(listener: Listener) -> None:
    """Re-reads contacts whose data or derived data changed (called after the derivers)."""
    if listener not in _readers:
        _readers.append(listener)


def derivers() -> list[Listener]:
    return list(_derivers)


def readers() -> list[Listener]:
    return list(_readers)


def contacts_changed(contact_ids: Iterable[int]) -> None:
    """Record, in the current transaction, that these contacts (or their company or activity) changed."""
    _record(contact_ids, derive=True)


def _record(contact_ids: Iterable[int], *, derive: bool) -> None:
    # Sorted: every insert of waiting rows goes in contact order, so two never deadlock (catch_up._RELEASE).
    ids = sorted({int(i) for i in contact_ids if i is not None})
    if not ids:
        return
    # A contact already waiting (not yet claimed) keeps its one row.
    if connection.vendor == "postgresql":
        # The ids as one array parameter: an import batch announces thousands of contacts, and
        # building a model instance and placeholders for each cost more than the insert itself.
        statement = sql.SQL(
            "INSERT INTO {} (contact_id, derive) SELECT unnest(%s::bigint[]), %s ON CONFLICT DO NOTHING"
        ).format(sql.Identifier(PendingChange._meta.db_table))
        with connection.cursor() as cursor:
            cursor.execute(statement.as_string(cursor.connection), [ids, derive])
    else:
        rows = [PendingChange(contact_id=pk, derive=derive) for pk in ids]
        PendingChange.objects.bulk_create(rows, batch_size=INSERT_BATCH, ignore_conflicts=True)
    transaction.on_commit(request)


def request() -> bool:
    """Queue the catch-up task, unless one is queued or running already (which will take the rows), or
    a failed one's retry is not due (the watchdog queues it then); True if queued.

    A queued task that has not started within CATCH_UP_LEASE_SECONDS, or a running one silent for as
    long, may be lost: another is queued (it ends at once if the running one lives).
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CATCH_UP_LEASE_SECONDS)
    # A running task's last sign of life: its heartbeat (running_since for a task of the version before).
    seen = Coalesce("heartbeat_at", "running_since")
    idle = (Q(queued_at=None) | Q(queued_at__lt=stale)) & (Q(running_since=None) | Q(seen__lt=stale))
    due = Q(retry_at=None) | Q(retry_at__lte=now)
    queued = CatchUpState.objects.alias(seen=seen).filter(idle, due, pk=1).update(queued_at=now) == 1
    if not queued:
        queued = CatchUpState.objects.get_or_create(pk=1, defaults={"queued_at": now})[1]
    if queued:
        async_task(CATCH_UP_TASK, task_name="catch up changed contacts", group="catch-up")
    return queued


MetricsListener = Callable[[None], None]
_metrics_listeners: list[MetricsListener] = []


def add_metrics_listener(listener: MetricsListener) -> None:
    """Called after commit when everyone's metrics (or scores) were recomputed."""
    if listener not in _metrics_listeners:
        _metrics_listeners.append(listener)


def metrics_changed(contact_ids: list[int] | None) -> None:
    """Tell readers that ContactMetrics (or scores) were recomputed: for these contacts (they re-read
    them with the next catch-up), or for everyone when `contact_ids` is None (the metrics listeners,
    after commit, so segments reading `metrics.*` can refresh).

    Not `contacts_changed`: recomputing metrics is itself what a deriver does; announcing it as a
    change of the contact would loop.
    """
    if contact_ids is not None:
        _record(contact_ids, derive=False)
        return
    for listener in _metrics_listeners:
        transaction.on_commit(partial(listener, None))


ImportListener = Callable[[int, str, list[int]], int | None]
_import_listeners: list[ImportListener] = []


def add_import_listener(listener: ImportListener) -> None:
    if listener not in _import_listeners:
        _import_listeners.append(listener)


def contacts_imported(import_id: int, name: str, contact_ids: list[int]) -> int | None:
    """Tell listeners, in the importing transaction, that a file import stored these contacts.

    Segments keeps them in the static segment `name` (created by the first call for an import) and
    returns its id, which the import records. Called once per batch.
    """
    result = None
    for listener in _import_listeners:
        result = listener(import_id, name, contact_ids) or result
    return result
