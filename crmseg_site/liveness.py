"""Runs that show: which worker runs what, whether it is still alive, and when to try again.

Long work (a full segment refresh, an export run, a claimed batch of automation runs, the catch-up
after writes) records on its own row when it started, the worker running it (`host:pid`) and, on
PostgreSQL, that worker's database session. While it runs, a thread of the worker process renews a heartbeat on the row
every RUN_HEARTBEAT_SECONDS (`heartbeat()`). A run is dead (`death()`) when:

- PostgreSQL: its database session is gone. A killed worker's session ends (the backend notices
  within DATABASE_CLIENT_CHECK_SECONDS, even in the middle of a statement) and takes the run's
  transaction and advisory locks with it; a terminated connection is the same. Sessions never
  come back, so this is certain at once, whatever the heartbeat says.
- Otherwise (SQLite, one host): its heartbeat is older than RUN_DEAD_AFTER_SECONDS and its process
  is gone. The heartbeat alone would not do: a SQLite refresh holds the database's only write lock,
  so its own heartbeat cannot be written until it commits.

The watchdog (segments/watchdog.py, twice every RUN_WATCH_MINUTES) fails dead runs with the reason and
retries them after `retry_delay()`. It lives here, not in an app, because every app uses it
(`contacts` for the catch-up, which may not import segments).
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

# One database session, as a string that only that session ever has (pids are reused, a pid
# with its start time is not). The same expression writes it and looks it up.
SESSION_OF = "{alias}.pid::text || '@' || extract(epoch FROM {alias}.backend_start)::text"
CURRENT_SESSION = f"(SELECT {SESSION_OF.format(alias='a')} FROM pg_stat_activity a WHERE a.pid = pg_backend_pid())"


def worker_name() -> str:
    """This process, as a run records it: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def current_session() -> str:
    """This connection's database session (PostgreSQL; '' elsewhere), to write on a run's row.

    Read once per connection: pg_stat_activity took ~5 ms on a busy server, a refresh's whole budget.
    """
    if connection.vendor != "postgresql":
        return ""
    connection.ensure_connection()
    raw = connection.connection
    if raw not in _SESSIONS:
        with connection.cursor() as cursor:
            cursor.execute(CURRENT_SESSION.join(["SELECT ", ""]))
            _SESSIONS[raw] = cursor.fetchone()[0]
    return _SESSIONS[raw]


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def live_sessions() -> set[str] | None:
    """Every database session now open (PostgreSQL); None where the database cannot say.

    It cannot when our role may not see other roles' sessions (their start time reads NULL
    without pg_read_all_stats): a worker of another role would look dead. Then the heartbeat decides.
    """
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT {SESSION_OF.format(alias="a")} FROM pg_stat_activity a
            WHERE a.backend_type = 'client backend' AND a.datname = current_database()"""
        )
        sessions = {row[0] for row in cursor.fetchall()}
    return None if None in sessions else sessions


def process_alive(worker: str) -> bool | None:
    """Whether the worker's process still exists: None when it ran on another host."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def death(
    *, worker: str, session: str, heartbeat_at: datetime | None, now: datetime, sessions: set[str] | None
) -> str | None:
    """Why the run is dead, in words for the admin; None while it may be alive.

    `sessions` is `live_sessions()`, read after the run's row (a session missing from it is gone for good).
    """
    if sessions is not None and session:
        if session in sessions:
            return None
        pid = session.partition("@")[0]
        return f"the worker {worker} stopped: its database session (backend {pid}) ended"
    silence = now - heartbeat_at if heartbeat_at else timedelta.max
    if silence < timedelta(seconds=settings.RUN_DEAD_AFTER_SECONDS) or process_alive(worker):
        return None
    since = f"since {timezone.localtime(heartbeat_at):%Y-%m-%d %H:%M:%S}" if heartbeat_at else "ever"
    return f"the worker {worker} stopped: no heartbeat {since}"


def retry_delay(failures: int) -> timedelta | None:
    """Back-off before retry number `failures` (1, 2, ...): doubling, capped; None once retries are used up."""
    if failures < 1 or failures > settings.RUN_RETRY_MAX_ATTEMPTS:
        return None
    seconds = settings.RUN_RETRY_BACKOFF_SECONDS * 2 ** (failures - 1)
    return timedelta(seconds=min(seconds, settings.RUN_RETRY_MAX_BACKOFF_SECONDS))


Beat = Callable[[datetime], None]


class _Heartbeats:
    """One daemon thread per process renewing the heartbeats of the runs this process has going.

    A run shorter than one interval is never beaten (no write at all); the thread uses a database
    connection of its own and closes it whenever no run is going.
    """

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._runs: dict[int, list] = {}  # key -> [next beat (monotonic), beat]
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None
        self._connected = False

    def add(self, beat: Beat) -> int:
        with self._wake:
            key = next(self._keys)
            self._runs[key] = [time.monotonic() + settings.RUN_HEARTBEAT_SECONDS, beat]
            if self._thread is None or not self._thread.is_alive():  # none yet, or lost in a fork
                self._thread = threading.Thread(target=self._loop, name="crmseg-heartbeat", daemon=True)
                self._thread.start()
            self._wake.notify()
        return key

    def remove(self, key: int) -> None:
        with self._wake:
            self._runs.pop(key, None)
            if not self._runs:
                self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                due = self._due()
                while not due and (self._runs or not self._connected):
                    soonest = min((run[0] for run in self._runs.values()), default=None)
                    self._wake.wait(None if soonest is None else max(soonest - time.monotonic(), 0))
                    due = self._due()
            if due:
                self._connected = True
                for beat in due:
                    self._beat(beat)
            else:
                connection.close()
                self._connected = False

    def _due(self) -> list[Beat]:
        now = time.monotonic()
        due = [run for run in self._runs.values() if run[0] <= now]
        for run in due:
            run[0] = now + settings.RUN_HEARTBEAT_SECONDS
        return [run[1] for run in due]

    @staticmethod
    def _beat(beat: Beat) -> None:
        try:
            beat(timezone.now())
        except Exception:
            logger.exception("Heartbeat failed; trying again in %s s", settings.RUN_HEARTBEAT_SECONDS)
            connection.close()


_HEARTBEATS = _Heartbeats()


@contextmanager
def heartbeat(beat: Beat) -> Iterator[None]:
    """Call `beat(now)` from the heartbeat thread every RUN_HEARTBEAT_SECONDS while the block runs.

    `beat` writes the heartbeat on the run's row, on the thread's own connection; it should skip a
    row another transaction holds (`select_for_update(skip_locked=True)`) rather than wait for it.
    """
    key = _HEARTBEATS.add(beat)
    try:
        yield
    finally:
        _HEARTBEATS.remove(key)
