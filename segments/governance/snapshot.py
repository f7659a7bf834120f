"""The figures a review keeps: what the reviewer saw, frozen with the review.

Size now and its change over 30 and 90 days (daily rollup), joins and leaves, engagement and
conversion rates and revenue per contact over the last 30 days (segment analytics, credited by
point-in-time membership), and where the segment is used.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from segments.analytics.measures import segment_measures
from segments.analytics.periods import checked_range
from segments.analytics.reports import measures_dict
from segments.models import Segment
from segments.pages.segment_page import segment_history

from .usage import uses

SPANS = (30, 90)
MEASURED_DAYS = 30


def _change(now: int, then: int) -> dict:
    return {"size_then": then, "change": now - then, "percent": round((now - then) * 100 / then, 1) if then else None}


def take_snapshot(segment: Segment, *, now: datetime) -> dict:
    today = timezone.localdate(now)
    history = segment_history(segment, now=now, span=max(SPANS) + 1)
    period = checked_range(today - timedelta(days=MEASURED_DAYS - 1), today)
    measures = measures_dict(segment_measures(segment, period))
    return {
        "taken_at": now.isoformat(),
        "size": segment.size,
        "status": segment.status,
        "rule": segment.rule,
        "last_refreshed_at": segment.last_refreshed_at.isoformat() if segment.last_refreshed_at else None,
        "size_change": {f"{span}d": _change(segment.size, history.sizes[-1 - span]) for span in SPANS},
        "period": period.label,
        "joins": sum(measures["joins"].values()),
        "leaves": sum(measures["leaves"].values()),
        "engagement_rate": measures["engagement_rate"],
        "conversion_rate": measures["conversion_rate"],
        "revenue_per_contact": measures["revenue_per_contact"],
        "usage": [{"what": use.what, "name": use.name} for use in uses([segment.pk]).get(segment.pk, [])],
    }
