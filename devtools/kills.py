"""SIGKILL one web worker and one task worker of a running server, and see them replaced (bench_load --kill-*).

The processes are found under the pids given (a gunicorn master, a `manage.py qcluster`), never by
name: other servers may run on the same host. A task worker is a descendant of the qcluster that the
database says runs something now (the catch-up's lease, a claimed automation batch, a full segment
refresh), so the kill lands in the middle of a task, not on the sentinel, pusher or monitor.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from activation.automation_models import AutomationRun, AutomationRunStatus
from contacts.models import CatchUpState
from segments.models import Segment


@dataclass
class Kill:
    role: str  # "gunicorn worker" or "qcluster worker"
    pid: int
    parent: int
    doing: str
    replacement: int | None = None
    replaced_after: float | None = None

    def describe(self) -> str:
        line = f"killed {self.role} {self.pid} ({self.doing})"
        if self.replacement is None:
            return line + f"; NOT replaced by {self.parent}"
        return line + f"; {self.parent} replaced it with {self.replacement} after {self.replaced_after:.1f} s"


def parents() -> dict[int, int]:
    """pid -> parent pid of every process on this host (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (command) state ppid ...": the command may hold spaces and parentheses.
        found[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return found


def children(pid: int) -> set[int]:
    return {child for child, parent in parents().items() if parent == pid}


def descendants(pid: int) -> dict[int, int]:
    """Every process below `pid`, with its parent."""
    tree = parents()
    below: dict[int, int] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in tree.items():
            if its_parent == parent and child not in below:
                below[child] = parent
                frontier.append(child)
    return below


def busy_workers() -> dict[int, str]:
    """pid -> what it runs, for this host's task workers that the database shows running something."""
    running: dict[str, str] = {}
    for worker in AutomationRun.objects.filter(status=AutomationRunStatus.RUNNING).values_list("claimed_by", flat=True):
        running[worker] = "a claimed batch of automation runs"
    for worker, name in Segment.objects.filter(refresh_running_since__isnull=False).values_list(
        "refresh_worker", "name"
    ):
        running[worker] = f"the full refresh of {name!r}"
    for worker in CatchUpState.objects.filter(running_since__isnull=False).values_list("worker", flat=True):
        running[worker] = "the catch-up after writes"
    host = socket.gethostname()
    return {
        int(pid): doing
        for worker, doing in running.items()
        for name, _, pid in [worker.rpartition(":")]
        if name == host and pid.isdigit()
    }


def kill_web_worker(master: int) -> Kill:
    """SIGKILL one gunicorn worker (a child of the master `master`)."""
    workers = sorted(children(master))
    if not workers:
        raise RuntimeError(f"process {master} has no child processes: is it gunicorn's master?")
    return _kill(Kill("gunicorn worker", workers[0], master, f"one of {len(workers)}, serving requests"))


def kill_task_worker(cluster: int, *, wait: float = 30) -> Kill:
    """SIGKILL a qcluster task worker below `cluster` while it runs a task (waits up to `wait` s for one)."""
    deadline = time.monotonic() + wait
    while True:
        below = descendants(cluster)
        busy = {pid: doing for pid, doing in busy_workers().items() if pid in below}
        if busy:
            pid, doing = min(busy.items())
            return _kill(Kill("qcluster worker", pid, below[pid], f"running {doing}"))
        if not below:
            raise RuntimeError(f"process {cluster} has no child processes: is it a running qcluster?")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no worker below qcluster {cluster} ran a task for {wait:.0f} s")
        time.sleep(0.2)


def _kill(kill: Kill) -> Kill:
    siblings = children(kill.parent)
    os.kill(kill.pid, signal.SIGKILL)
    started = time.monotonic()
    while time.monotonic() - started < 60:
        new = children(kill.parent) - siblings
        if new:
            kill.replacement, kill.replaced_after = min(new), time.monotonic() - started
            break
        time.sleep(0.1)
    return kill


Action = Callable[[], Kill]


def at(seconds: float, action: Action, log: Callable[[str], None], done: list[Kill]) -> None:
    """Run `action` `seconds` from now in a thread of its own; its Kill goes to `done`, its line to `log`."""

    def run() -> None:
        time.sleep(seconds)
        try:
            kill = action()
        except RuntimeError as error:
            log(f"  KILL FAILED at +{seconds:.0f}s: {error}")
            return
        done.append(kill)
        log(f"  t={seconds:5.0f}s  {kill.describe()}")

    threading.Thread(target=run, daemon=True).start()
