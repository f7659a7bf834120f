"""The daily governance jobs (django-q2 Schedules declared in crmseg_site/schedules.py)."""

from __future__ import annotations

from .health import check_health
from .reminders import SCHEDULE_NAME as REMINDERS_SCHEDULE
from .reminders import send_review_reminders

DAILY_SCHEDULE = "governance: health flags"
__all__ = ["DAILY_SCHEDULE", "REMINDERS_SCHEDULE", "daily_governance", "review_reminders"]


def daily_governance() -> dict:
    """Compute and keep every segment's stored health flags."""
    flags = check_health()
    return {"segments": len(flags), "flagged": sum(1 for found in flags.values() if found)}


def review_reminders() -> dict:
    """Remind owners of reviews coming due, due and overdue; escalate long-overdue ones (each once)."""
    return send_review_reminders()
