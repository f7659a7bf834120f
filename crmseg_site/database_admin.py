"""The admin's database page: where reads and writes go, how far the read replica lags, and how the
catch-up after writes (contacts/catch_up.py) is doing: running since when on which worker, the
contacts waiting, and its last failure with the reason."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from contacts import catch_up
from contacts.models import CatchUpState

from .liveness import live_sessions
from .replicas import REPLICA, configured, replica_status


def _where(alias: str) -> str:
    """Engine, host, port and database name of an alias (never its credentials)."""
    config = settings.DATABASES[alias]
    if connections[alias].vendor == "sqlite":
        return f"SQLite file {config['NAME']}"
    return f"PostgreSQL {config['HOST'] or 'local socket'}:{config['PORT'] or 5432}/{config['NAME']}"


def _standbys() -> list[tuple]:
    """The primary's own view of its streaming standbys (PostgreSQL): name, address, state, replay lag."""
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        return []
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT application_name, client_addr::text, state, EXTRACT(EPOCH FROM replay_lag)::float"
            " FROM pg_stat_replication ORDER BY application_name"
        )
        return cursor.fetchall()


def _catch_up() -> dict:
    """The catch-up's row, the contacts waiting, and why its running task looks dead (the watchdog fails it soon)."""
    held: CatchUpState = catch_up.state()
    dead = None
    if held.runner is not None:
        dead = catch_up.holder_death(held, now=timezone.now(), sessions=live_sessions())
    return {"state": held, "waiting": catch_up.waiting(), "dead": dead}


def database_page(request: HttpRequest) -> HttpResponse:
    """Admin-wrapped (staff only) in crmseg_site/urls.py; asks the replica afresh on every view."""
    ctx = {
        **admin.site.each_context(request),
        "title": "Databases",
        "primary": _where(DEFAULT_DB_ALIAS),
        "replica": _where(REPLICA) if configured() else None,
        "status": replica_status() if configured() else None,
        "standbys": _standbys(),
        "max_lag": settings.REPLICA_MAX_LAG_SECONDS,
        "check_seconds": settings.REPLICA_CHECK_SECONDS,
        "catch_up": _catch_up(),
    }
    return TemplateResponse(request, "admin/database.html", ctx)
