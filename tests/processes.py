"""Real processes for the tests about dying workers: a `qcluster`, or a Python process that runs some
project code and then hangs, each on the test database, and ways to kill them and wait for things."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

import psycopg
from django.conf import settings
from django.db import connection

T = TypeVar("T")


def database_url() -> str:
    """DATABASE_URL of the test database, for a child process."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        login = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        return f"postgres://{login}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"  # an absolute path: sqlite:////...


def child_env(**extra: object) -> dict[str, str]:
    """The environment of a child process: this one's, on the test database, fast liveness settings."""
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(
        DATABASE_URL=database_url(),
        Q_CLUSTER_NAME=settings.Q_CLUSTER["name"],
        RUN_HEARTBEAT_SECONDS="1",
        RUN_DEAD_AFTER_SECONDS="3",
        DATABASE_CLIENT_CHECK_SECONDS="1",
        SECRET_KEY=settings.SECRET_KEY,
        DJANGO_SETTINGS_MODULE="crmseg_site.settings",
    )
    env.update({key: str(value) for key, value in extra.items()})
    return env


@contextmanager
def qcluster(**extra: object) -> Iterator[subprocess.Popen]:
    """A real `manage.py qcluster` (ORM broker) on the test database, stopped when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=settings.BASE_DIR,
        env=child_env(Q_WORKERS=1, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        _stop(process)


@contextmanager
def python(code: str, *args: object, **extra: object) -> Iterator[subprocess.Popen]:
    """A Python process running `code` with Django set up (stdout readable line by line), killed at the end."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import django; django.setup()\n" + code, *map(str, args)],
        cwd=settings.BASE_DIR,
        env=child_env(**extra),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        _stop(process)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process itself, then SIGKILL to its group (children it left, or a hang).

    Not SIGTERM to the group: a qcluster's own processes each take the signal then, and the cluster
    never stops (it waited out the whole timeout, 15 s per cluster); told alone, it stops in ~1 s.
    """
    if process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with suppress(ProcessLookupError):  # the group is gone: nothing was left behind
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if process.stdout:
        process.stdout.close()


def wait_for(probe: Callable[[], T], *, timeout: float = 30, every: float = 0.1, what: str = "") -> T:
    """Call `probe` until it returns something true; that value (the test fails after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what or probe}")
        time.sleep(every)


def raw_postgres() -> psycopg.Connection:
    """A connection of its own to the test database (PostgreSQL), outside Django's."""
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"] or 5432
    )
