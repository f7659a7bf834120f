"""Announce that segment memberships changed, so readers of membership history can catch up.

`segments` knows nothing of activation. Code that writes MembershipChange rows (the refresh,
static member edits) calls `memberships_changed(segment_ids)` explicitly; listeners registered at
start-up (activation registers its automations in `ActivationConfig.ready`) run once the
surrounding transaction has committed.
"""

from collections.abc import Callable, Iterable
from functools import partial

from django.db import transaction

Listener = Callable[[list[int]], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def memberships_changed(segment_ids: Iterable[int]) -> None:
    """Tell listeners, after commit, that these segments gained or lost members."""
    ids = sorted({int(i) for i in segment_ids if i is not None})
    if not ids:
        return
    for listener in _listeners:
        transaction.on_commit(partial(listener, ids))
