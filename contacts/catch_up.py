"""The catch-up task: every contact that writes changed, taken in rounds, one task at a time.

A round claims every waiting PendingChange row (contacts/changes.py) with one conditional UPDATE,
hands the changed contacts to the derivers (metrics, then scores), claims what they announced
(their derived data changed), hands all of them to the readers (one scoped segment refresh), and
deletes the claimed rows. Every step is idempotent, so a change is caught up at least once.

One task runs at a time: it holds the lease on the CatchUpState row, which records when it took it
(`running_since`), its worker (`host:pid`), on PostgreSQL that worker's database session, and a
heartbeat renewed by the worker's heartbeat thread (crmseg_site/liveness.py) while the task runs,
however long one round takes. A task that finds the lease held by a live task ends at once (the
holder will take its contacts). The holder goes round at most once per CATCH_UP_INTERVAL_MS while
contacts keep arriving, for up to CATCH_UP_MAX_SECONDS, then lets go and queues a successor if any
contact waits: under a steady stream of writes the queue holds at most one catch-up task, and each
round's work grows with the contacts touched, not with the writes.

The lease is free when nobody holds it or its holder is dead: by `liveness.death()` (PostgreSQL:
its session is gone; elsewhere: no heartbeat for RUN_DEAD_AFTER_SECONDS and its process gone), or,
whatever the session says, no heartbeat for CATCH_UP_LEASE_SECONDS from a process not known to be
alive (a session can outlive its worker behind a connection pooler); a lease taken by the version
before workers were recorded keeps its old rule (free once not renewed for CATCH_UP_LEASE_SECONDS).

A dead holder is failed by the watchdog task (segments/watchdog.py, twice a minute; segments
registers `watch_catch_up`, as contacts knows nothing of segments), or by a task that finds it
first: the lease is let go, the dead task's claimed rows wait again, and the failure is recorded
with the reason and a retry time: at once for the first death in a row (a dead worker is no fault of
the work), else `liveness.retry_delay()` away (never given up: past RUN_RETRY_MAX_ATTEMPTS the last
delay again). No task takes the lease before then; the watchdog
queues the retry when due. A task that raises is failed the same way, with its error. Each
transition is conditional on the holder's token, so a dead task is failed once and its retry queued
once. Two live tasks never hold contacts at once: only the holder claims rows, and it takes any
claim not its own (a dead task's) with the waiting ones. The admin's Databases page
(crmseg_site/database_admin.py) shows it all.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from contacts.changes import derivers, readers, request
from contacts.models import CatchUpState, PendingChange
from crmseg_site.liveness import (
    current_session,
    death,
    heartbeat,
    live_sessions,
    process_alive,
    retry_delay,
    worker_name,
)

logger = logging.getLogger(__name__)

_PENDING = PendingChange._meta.db_table
# A dead task's claimed rows back to waiting: a contact that has a waiting row already keeps that
# one (the unique constraint on waiting rows would refuse a second, and a write may add one at any time).
# In contact order, as writes add theirs (contacts.changes): two inserts meeting each other's uncommitted
# rows in opposite orders deadlock (seen at 1M contacts under load: an ingest answered 500).
_RELEASE = f"""INSERT INTO {_PENDING} (contact_id, derive, claim, claimed_at)
    SELECT contact_id, derive, NULL, NULL FROM {_PENDING} WHERE claim = %s ORDER BY contact_id
    ON CONFLICT DO NOTHING"""


@dataclass
class CatchUp:
    rounds: int = 0
    contacts: int = 0
    skipped: bool = False  # another task held the lease, or a failed one's retry is not due

    def as_dict(self) -> dict:
        return {"rounds": self.rounds, "contacts": self.contacts, "skipped": self.skipped}


def catch_up() -> CatchUp:
    token = uuid.uuid4()
    done = CatchUp()
    since = _take_lease(token)
    if since is None:
        done.skipped = True
        return done
    deadline = time.monotonic() + settings.CATCH_UP_MAX_SECONDS
    interval = settings.CATCH_UP_INTERVAL_MS / 1000
    try:
        with heartbeat(partial(_beat, token)):
            while True:
                started = time.monotonic()
                contacts = catch_up_round(token)
                if not contacts:
                    break
                done.rounds += 1
                done.contacts += contacts
                if time.monotonic() >= deadline or not CatchUpState.objects.filter(runner=token).exists():
                    break
                if not PendingChange.objects.filter(claim=None).exists():
                    break  # idle: end now rather than wait; the next write queues a task again
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except BaseException as error:  # an exception, or the worker told to stop: the next task takes the contacts
        _fail(token, error=f"The catch-up started {_when(since)} failed: {type(error).__name__}: {error}")
        raise
    CatchUpState.objects.filter(runner=token).update(**_LET_GO, queued_at=None, failures=0)
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


def state() -> CatchUpState:
    """The catch-up's row, for health pages (unsaved and empty before the first catch-up)."""
    return CatchUpState.objects.filter(pk=1).first() or CatchUpState(pk=1)


def watch_catch_up(now: datetime) -> dict:
    """The watchdog's part (segments/watchdog.py): fail a dead catch-up with the reason, queue its retry when due."""
    failed = fail_dead(now=now)
    retried = CatchUpState.objects.filter(pk=1, runner=None, retry_at__lte=now).update(retry_at=None, queued_at=None)
    return {"catch_up_failed": failed is not None, "catch_up_retried": bool(retried) and request()}


def fail_dead(*, now: datetime) -> str | None:
    """Fail the task holding the lease if it is dead; the error recorded (None: none dead, or failed already)."""
    held = CatchUpState.objects.filter(pk=1, runner__isnull=False).first()
    if held is None:
        return None
    reason = holder_death(held, now=now, sessions=live_sessions())  # sessions after the row: see death()
    if reason is None or held.runner is None:
        return None
    started = f" started {_when(held.running_since)}" if held.running_since else ""
    error = f"The catch-up{started} did not finish: {reason}."
    return error if _fail(held.runner, error=error, died=True, now=now) else None


def holder_death(held: CatchUpState, *, now: datetime, sessions: set[str] | None) -> str | None:
    """Why the task holding the lease is dead, in words for the admin; None while it may be alive."""
    if not held.worker:  # taken by a task of the version before workers were recorded: its lease rule
        if held.running_since is not None and held.running_since >= now - _lease():
            return None
        return f"its task recorded no worker and has renewed no lease for {settings.CATCH_UP_LEASE_SECONDS} s"
    beat_at = held.heartbeat_at
    reason = death(worker=held.worker, session=held.session, heartbeat_at=beat_at, now=now, sessions=sessions)
    if reason is None and (beat_at is None or beat_at < now - _lease()) and not process_alive(held.worker):
        # Its session lives on (behind a connection pooler?), but nothing of it has been heard for long.
        since = f"since {_when(beat_at)}" if beat_at else "ever"
        reason = f"the worker {held.worker} stopped: no heartbeat {since}"
    return reason


def _take_lease(token: uuid.UUID) -> datetime | None:
    """Take the lease for this task (failing a dead holder first); its start time, or None if not taken."""
    held, _ = CatchUpState.objects.get_or_create(pk=1)
    if held.runner is not None and fail_dead(now=timezone.now()) is None:
        return None  # a live task holds it, or another just failed the dead one and may be taking it
    now = timezone.now()
    free = Q(runner=None) & (Q(retry_at=None) | Q(retry_at__lte=now))
    mine = {"runner": token, "running_since": now, "heartbeat_at": now, "worker": worker_name()}
    mine.update(session=current_session(), queued_at=None, retry_at=None)
    taken = CatchUpState.objects.filter(free, pk=1).update(**mine)
    return now if taken == 1 else None


def _beat(token: uuid.UUID, now: datetime) -> None:
    """Heartbeat of the task holding the lease with `token` (from the heartbeat thread; never waits for the row)."""
    with transaction.atomic():
        mine = CatchUpState.objects.filter(pk=1, runner=token)
        if mine.select_for_update(skip_locked=True, no_key=True).values_list("pk", flat=True):
            mine.update(heartbeat_at=now)


def _fail(token: uuid.UUID, *, error: str, died: bool = False, now: datetime | None = None) -> bool:
    """Fail the task holding the lease with `token`: let go of the lease, put its claimed rows back to
    waiting and set the retry. True if this call did it (the holder and the watchdog may both try).

    A task whose worker died (a deploy, an out-of-memory kill, a lost host) is no fault of its work:
    the first such failure in a row is retried at once (retry time `now`), or every write would wait
    a back-off for nothing (bench_load --kill-worker-at measured contacts stale ~75 s after one kill
    with a 60 s first delay). A task that raised, and deaths in a row, back off.
    """
    now = now or timezone.now()
    with transaction.atomic():
        rows = CatchUpState.objects.filter(pk=1, runner=token)
        failures = rows.select_for_update(no_key=True).values_list("failures", flat=True).first()
        if failures is None:
            return False
        backed_off = failures if died else failures + 1  # the failures in a row that count for the delay
        delay = retry_delay(min(backed_off, settings.RUN_RETRY_MAX_ATTEMPTS)) if backed_off else timedelta(0)
        retry_at = now + delay if delay is not None else None
        rows.update(**_LET_GO, failures=F("failures") + 1, failed_at=now, last_error=error, retry_at=retry_at)
        with connection.cursor() as cursor:
            cursor.execute(_RELEASE, [models.UUIDField().get_db_prep_value(token, connection)])
        PendingChange.objects.filter(claim=token).delete()
    logger.warning("Catch-up: %s", error)
    return True


def _claim(token: uuid.UUID, *, changed_too: bool) -> list[int]:
    """Claim the waiting rows, and any a dead task left claimed (only the lease holder claims); returns
    the contacts this task holds as changed (not just re-derived)."""
    rows = PendingChange.objects.exclude(claim=token)
    if not changed_too:
        rows = rows.filter(derive=False)
    rows.update(claim=token, claimed_at=timezone.now())
    held = PendingChange.objects.filter(claim=token, derive=True)
    return sorted(set(held.values_list("contact_id", flat=True)))


# The columns of a task letting go of the lease (done or failed); the last failure stays.
_LET_GO = {"runner": None, "running_since": None, "heartbeat_at": None, "worker": "", "session": ""}


def _lease() -> timedelta:
    return timedelta(seconds=settings.CATCH_UP_LEASE_SECONDS)


def _when(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}"
