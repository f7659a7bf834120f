"""Reviews for the demo (`load_catalog --refresh --history WEEKS`, which `make run` uses).

Without them every starter segment would open the governance page as never reviewed and overdue.
Each active segment gets a metrics, a boundary and a strategy review (decision: keep) at a past
time spread by the segment's place in the catalog, so that on a fresh demo most reviews are within
their cadence, some are overdue and every sixth segment was never reviewed at all. A review is
recorded through `record_review`, as a person's would be, snapshot included; none dates from
before its segment existed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from segments.models import ReviewDecision, ReviewKind, Segment, SegmentStatus

from .reviews import record_review

# Days before now of each kind's review, for the segment at place i: a base and a step per place,
# taken modulo a spread (metrics are monthly, boundaries quarterly, strategy half-yearly by default).
SPREAD = {
    ReviewKind.METRICS: (4, 9, 34),
    ReviewKind.BOUNDARIES: (10, 23, 95),
    ReviewKind.STRATEGY: (20, 37, 175),
}
NOTES = {
    ReviewKind.METRICS: "Monthly figures read: size, engagement and conversion as expected.",
    ReviewKind.BOUNDARIES: "Rule thresholds checked against the boundary report; kept.",
    ReviewKind.STRATEGY: "Still serves its campaigns; owner confirmed.",
}
NEVER_REVIEWED_EVERY = 6  # every sixth segment has no review yet


def seed_reviews(segments: Iterable[Segment], *, now: datetime, reviewer=None) -> int:
    """Record the demo's reviews of `segments` (the active ones); returns how many."""
    recorded = 0
    active = Segment.objects.filter(pk__in=[s.pk for s in segments]).exclude(status=SegmentStatus.ARCHIVED)
    for place, segment in enumerate(active.order_by("pk")):
        if place % NEVER_REVIEWED_EVERY == NEVER_REVIEWED_EVERY - 1:
            continue
        for kind, (base, step, spread) in SPREAD.items():
            at = now - timedelta(days=base + (place * step) % spread)
            if at <= segment.created_at:
                continue
            record_review(
                segment,
                kind=kind,
                decision=ReviewDecision.KEEP,
                recorded_by=reviewer.get_username() if reviewer else "demo",
                reviewer=reviewer,
                notes=NOTES[kind],
                now=at,
            )
            recorded += 1
    return recorded
