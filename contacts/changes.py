"""Announce that contacts (or their metrics) changed, so that readers of contact data (segments) can catch up.

`contacts` knows nothing of segments. Code that writes contacts, companies or activities calls
`contacts_changed(ids)` explicitly; listeners registered at start-up (segments registers its
refresh in `SegmentsConfig.ready`) run once the surrounding transaction has committed.
"""

from collections.abc import Callable, Iterable

from django.db import transaction

Listener = Callable[[list[int]], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def contacts_changed(contact_ids: Iterable[int]) -> None:
    """Tell listeners, after commit, that these contacts (or their company or activity) changed."""
    ids = sorted({int(i) for i in contact_ids if i is not None})
    if not ids:
        return
    for listener in _listeners:
        transaction.on_commit(lambda listener=listener: listener(ids))


MetricsListener = Callable[[list[int] | None], None]
_metrics_listeners: list[MetricsListener] = []


def add_metrics_listener(listener: MetricsListener) -> None:
    if listener not in _metrics_listeners:
        _metrics_listeners.append(listener)


def metrics_changed(contact_ids: list[int] | None) -> None:
    """Tell listeners, after commit, that ContactMetrics were recomputed: for these contacts, or
    for everyone when `contact_ids` is None (so segments reading `metrics.*` can refresh).

    A separate channel from `contacts_changed`, because recomputing metrics is itself what a
    contacts_changed listener does: announcing it there would loop.
    """
    ids = None if contact_ids is None else sorted(set(contact_ids))
    if ids == []:
        return
    for listener in _metrics_listeners:
        transaction.on_commit(lambda listener=listener: listener(ids))


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
