"""The daily governance job (a django-q2 Schedule declared in crmseg_site/schedules.py)."""

from __future__ import annotations

from .health import check_health

DAILY_SCHEDULE = "governance: health flags"


def daily_governance() -> dict:
    """Compute and keep every segment's stored health flags."""
    flags = check_health()
    return {"segments": len(flags), "flagged": sum(1 for found in flags.values() if found)}
