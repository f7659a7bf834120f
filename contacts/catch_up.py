"""The catch-up task: every contact that writes changed, taken in rounds, one task at a time.

A round claims every waiting PendingChange row (contacts/changes.py) with one conditional UPDATE,
hands the changed contacts to the derivers (metrics, then scores), claims what they announced
(their derived data changed), hands all of them to the readers (one scoped segment refresh), and
deletes the claimed rows. Rows claimed by a task that died are claimed again once older than
CATCH_UP_LEASE_SECONDS, so a change is caught up at least once; every step is idempotent.

One task runs at a time: it holds the lease on the CatchUpState row and renews it every round; a
task that finds the lease held ends at once (the holder will take its contacts). The holder goes
round at most once per CATCH_UP_INTERVAL_MS while contacts keep arriving, for up to
CATCH_UP_MAX_SECONDS, then lets go and queues a successor if any contact waits: under a steady
stream of writes the queue holds at most one catch-up task, and each round's work grows with the
contacts touched, not with the writes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from contacts.changes import derivers, readers, request
from contacts.models import CatchUpState, PendingChange


@dataclass
class CatchUp:
    rounds: int = 0
    contacts: int = 0
    skipped: bool = False  # another task held the lease

    def as_dict(self) -> dict:
        return {"rounds": self.rounds, "contacts": self.contacts, "skipped": self.skipped}


def catch_up() -> CatchUp:
    token = uuid.uuid4()
    done = CatchUp()
    if not _take_lease(token):
        done.skipped = True
        return done
    deadline = time.monotonic() + settings.CATCH_UP_MAX_SECONDS
    interval = settings.CATCH_UP_INTERVAL_MS / 1000
    try:
        while True:
            started = time.monotonic()
            contacts = catch_up_round(token)
            if not contacts:
                break
            done.rounds += 1
            done.contacts += contacts
            if time.monotonic() >= deadline or not _renew_lease(token):
                break
            if not PendingChange.objects.filter(claim=None).exists():
                break  # idle: end now rather than wait; the next write queues a task again
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        CatchUpState.objects.filter(runner=token).update(runner=None, running_since=None, queued_at=None)
    # Contacts that arrived after the last round while this task held the lease queued nothing.
    if PendingChange.objects.filter(claim=None).exists():
        request()
    return done


def catch_up_round(token: uuid.UUID) -> int:
    """One round: derivers on the changed contacts, then readers on those and the re-derived ones.
    Returns how many contacts the readers were given (0: nothing was waiting)."""
    changed = _claim(token, changed_too=True)
    if not changed and not PendingChange.objects.filter(claim=token).exists():
        return 0
    if changed:
        for deriver in derivers():
            deriver(changed)
    _claim(token, changed_too=False)  # what the derivers announced: derived data of these contacts
    ids = sorted(set(PendingChange.objects.filter(claim=token).values_list("contact_id", flat=True)))
    for reader in readers():
        reader(ids)
    PendingChange.objects.filter(claim=token).delete()
    return len(ids)


def waiting() -> int:
    """Contacts waiting for a catch-up (claimed or not), for benchmarks and health pages."""
    return PendingChange.objects.values("contact_id").distinct().count()


def _claim(token: uuid.UUID, *, changed_too: bool) -> list[int]:
    """Claim the waiting rows (those of a task whose lease expired too); returns the contacts this
    task holds as changed (not just re-derived)."""
    now = timezone.now()
    rows = PendingChange.objects.filter(Q(claim=None) | Q(claimed_at__lt=_stale(now)))
    if not changed_too:
        rows = rows.filter(derive=False)
    rows.update(claim=token, claimed_at=now)
    held = PendingChange.objects.filter(claim=token, derive=True)
    return sorted(set(held.values_list("contact_id", flat=True)))


def _take_lease(token: uuid.UUID) -> bool:
    now = timezone.now()
    CatchUpState.objects.get_or_create(pk=1)
    free = Q(running_since=None) | Q(running_since__lt=_stale(now))
    return CatchUpState.objects.filter(free, pk=1).update(runner=token, running_since=now, queued_at=None) == 1


def _renew_lease(token: uuid.UUID) -> bool:
    return CatchUpState.objects.filter(runner=token).update(running_since=timezone.now()) == 1


def _stale(now):
    return now - timedelta(seconds=settings.CATCH_UP_LEASE_SECONDS)
