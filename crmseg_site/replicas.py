"""Reads that may go to a streaming replica of the primary (DATABASE_REPLICA_URL).

Without DATABASE_REPLICA_URL there is one database and none of this runs: settings install no
router, the middleware steps aside and `replica_reads` does nothing.

With it, settings add the `replica` alias and install `ReplicaRouter`. Every write goes to the
primary ("default"), and so does every read unless all of these hold:

- it runs inside `replica_reads()` (a view decorator and a context manager), which marks the
  read-heavy work: preview counts, analytics, governance, segment and contact pages, the export's
  audience stream;
- its model belongs to the project's own apps (REPLICATED_APPS): sessions, users and django-q's
  queue always read the primary;
- the request or task has written nothing yet: its first statement other than a SELECT on the
  primary's connection (ORM or raw SQL) sends its later reads to the primary, so it reads its own
  writes; no transaction is open on the primary either;
- the replica has replayed what the reader must see: a task's scope notes the primary's WAL
  position when it opens and waits up to CATCH_UP_WAIT_SECONDS for the replica to pass it; a
  request that wrote leaves that position in a cookie, and the browser's next requests (a redirect
  after a save) use the replica only once it is past it;
- the replica answers and its replay lag is at most REPLICA_MAX_LAG_SECONDS (asked at most once
  every REPLICA_CHECK_SECONDS per process). A replica down or behind is skipped with a warning in
  the log, and the reads go to the primary.

Lag is "now minus the commit time of the last replayed transaction" while WAL received is not yet
replayed, 0 when all received WAL is replayed (an idle primary is no lag). The admin's database
page (`replica_status`) shows it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

REPLICA = "replica"
# Apps whose tables the replica serves. Django's own (auth, sessions, admin log) and django-q's
# queue stay on the primary: a session saved at login must be there on the next page.
REPLICATED_APPS = frozenset({"contacts", "segments", "activation", "predictions"})
# A browser that wrote carries the primary's WAL position of its write in this cookie.
WROTE_AT_COOKIE = "crmseg_wrote_at"
LSN = re.compile(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}")
# How long a task's scope waits for the replica to replay what was committed before it opened
# (polling every CATCH_UP_POLL_SECONDS); past it, the task reads the primary.
CATCH_UP_WAIT_SECONDS = 2.0
CATCH_UP_POLL_SECONDS = 0.05

# One row: is it a standby, its replay lag in seconds (NULL: unknown), and whether it replayed
# past the given WAL position (true when none is given).
STATUS_SQL = """SELECT pg_is_in_recovery(),
    CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
         THEN 0.0
         ELSE EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float END,
    %s::pg_lsn IS NULL OR pg_last_wal_replay_lsn() >= %s::pg_lsn"""


def configured() -> bool:
    return REPLICA in settings.DATABASES


@dataclass(frozen=True)
class ReplicaStatus:
    """What the replica answered (or why it did not), and whether reads may use it."""

    reachable: bool
    standby: bool = False
    lag_seconds: float | None = None
    caught_up: bool = True
    error: str = ""

    @property
    def usable(self) -> bool:
        return self.problem == ""

    @property
    def problem(self) -> str:
        """Why reads skip the replica, or "" when they may use it."""
        limit = settings.REPLICA_MAX_LAG_SECONDS
        if not self.reachable:
            return f"it does not answer ({self.error})"
        if not self.standby:
            return "it is not a standby (pg_is_in_recovery() is false)"
        if self.lag_seconds is None:
            return "its replay lag is unknown (no transaction replayed yet)"
        if self.lag_seconds > limit:
            return f"its replay lag of {self.lag_seconds:.1f} s is over REPLICA_MAX_LAG_SECONDS={limit}"
        return ""


def replica_status(*, after_lsn: str | None = None) -> ReplicaStatus:
    """Ask the replica for its state (one short query); `after_lsn`: has it replayed that far?"""
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(STATUS_SQL, [after_lsn, after_lsn])
            standby, lag, caught_up = cursor.fetchone()
    except DatabaseError as error:
        connections[REPLICA].close()  # the next attempt connects afresh
        return ReplicaStatus(reachable=False, error=str(error).strip().splitlines()[0] if str(error) else repr(error))
    return ReplicaStatus(reachable=True, standby=standby, lag_seconds=lag, caught_up=caught_up)


@dataclass
class _LastCheck:
    """The process's last answer from the replica, reused for REPLICA_CHECK_SECONDS."""

    at: float = float("-inf")
    usable: bool = False

    def fresh(self) -> bool:
        return time.monotonic() - self.at < settings.REPLICA_CHECK_SECONDS


_last_check = _LastCheck()


def _checked(status: ReplicaStatus) -> bool:
    if not status.usable:
        logger.warning("Read replica skipped: %s; reads go to the primary.", status.problem)
    _last_check.at, _last_check.usable = time.monotonic(), status.usable
    return status.usable


def _replica_usable() -> bool:
    return _last_check.usable if _last_check.fresh() else _checked(replica_status())


def _caught_up(after_lsn: str, *, wait_seconds: float) -> bool:
    """The replica is usable and has replayed past `after_lsn`, waiting up to `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    while True:
        status = replica_status(after_lsn=after_lsn)
        if not status.usable:
            return _checked(status)
        if status.caught_up:
            return _checked(status)
        if time.monotonic() >= deadline:
            logger.info("Read replica skipped: it has not replayed %s yet; reads go to the primary.", after_lsn)
            return False
        time.sleep(CATCH_UP_POLL_SECONDS)


def primary_lsn() -> str:
    """The primary's WAL insert position: every commit so far ends before it (even one not yet
    flushed, with synchronous_commit off)."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
        return cursor.fetchone()[0]


@dataclass
class _Work:
    """One request or task: may it read the replica now, has it written, what must the replica
    have replayed before it serves its reads."""

    replica_allowed: bool = False
    wrote: bool = False
    after_lsn: str | None = None
    wait_seconds: float = 0.0
    decided: bool | None = field(default=None)  # the replica's answer, asked at the first read

    def reads_replica(self) -> bool:
        if not self.replica_allowed or self.wrote or connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return False
        if self.decided is None:
            self.decided = (
                _caught_up(self.after_lsn, wait_seconds=self.wait_seconds) if self.after_lsn else _replica_usable()
            )
        return self.decided

    def track(self, execute: Callable, sql: object, params: object, many: bool, context: dict) -> object:
        """execute_wrapper of the primary's connection: anything but a SELECT counts as a write."""
        if not (isinstance(sql, str) and sql.lstrip()[:6].upper() == "SELECT"):
            self.wrote = True
        return execute(sql, params, many, context)


_work: ContextVar[_Work | None] = ContextVar("crmseg_replica_work", default=None)


@contextmanager
def _tracking(work: _Work) -> Iterator[_Work]:
    token = _work.set(work)
    try:
        with connections[DEFAULT_DB_ALIAS].execute_wrapper(work.track):
            yield work
    finally:
        _work.reset(token)


@contextmanager
def replica_reads() -> Iterator[None]:
    """Reads inside may go to the replica (see the module's rules). As a view decorator:
    `@replica_reads()`. Outside a request it opens a task's scope, which reads at least what the
    primary had committed when it opened."""
    if not configured():
        yield
        return
    work = _work.get()
    if work is None:
        task = _Work(replica_allowed=True, after_lsn=primary_lsn(), wait_seconds=CATCH_UP_WAIT_SECONDS)
        with _tracking(task):
            yield
        return
    allowed, work.replica_allowed = work.replica_allowed, True
    try:
        yield
    finally:
        work.replica_allowed = allowed


class ReplicaRouter:
    """Installed by settings only when DATABASE_REPLICA_URL is set. Always names a database:
    left to itself Django would write an instance back where it was read from."""

    def db_for_read(self, model, **hints) -> str:
        work = _work.get()
        if work is not None and model._meta.app_label in REPLICATED_APPS and work.reads_replica():
            return REPLICA
        return DEFAULT_DB_ALIAS

    def db_for_write(self, model, **hints) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True  # the same rows on both

    def allow_migrate(self, db: str, app_label: str, **hints) -> bool:
        return db != REPLICA  # a standby is read-only; it gets the schema by replication


class ReadYourWritesMiddleware:
    """Each request is one unit of work: its writes send its later reads to the primary, and a
    request that wrote tells the browser where the primary's WAL stood (WROTE_AT_COOKIE), so the
    next page reads the replica only once it has replayed that far."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if not configured():
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        wrote_at = request.COOKIES.get(WROTE_AT_COOKIE, "")
        with _tracking(_Work(after_lsn=wrote_at if LSN.fullmatch(wrote_at) else None)) as work:
            response = self.get_response(request)
        if work.wrote:
            response.set_cookie(
                WROTE_AT_COOKIE,
                primary_lsn(),
                max_age=settings.REPLICA_MAX_LAG_SECONDS + settings.REPLICA_CHECK_SECONDS,
                httponly=True,
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
        return response
