"""What segments hold back from activity retention (contacts/retention.py): a month of activities
goes only once the analytics rollups have rolled it up, and while no live segment's rule counts
activities further back than retention keeps."""

from __future__ import annotations

from django.utils import timezone

from contacts.retention import Span
from segments.models import AnalyticsState, Segment, SegmentStatus
from segments.rules.validation import retention_errors


def rolled_up(span: Span) -> str | None:
    """The analytics have rolled up every day of the span (computed through its last local day) and
    every one of its activities (the update's activity watermark is at or past its newest id).
    Periods stored then are never recomputed from fewer activities unless a late activity or a
    backfill reopens them (docs/scale.md, "Retention")."""
    state = AnalyticsState.objects.order_by("pk").first()
    if state is None or state.computed_through is None:
        return "the analytics have never been computed"
    last_day = timezone.localdate(span.end)
    if state.computed_through < last_day:
        return f"the analytics are computed through {state.computed_through}, not yet {last_day}"
    if state.activity_id < span.newest_id:
        return f"the analytics have read activities up to id {state.activity_id}, not yet {span.newest_id}"
    return None


def no_rule_reads_past(span: Span) -> str | None:
    """No live segment counts activities over a window longer than retention keeps."""
    rules = Segment.objects.rule_based().exclude(status=SegmentStatus.ARCHIVED).order_by("slug")
    reading = [
        f"{slug} ({errors[0].path})"
        for slug, rule in rules.values_list("slug", "rule")
        if (errors := retention_errors(rule, months=span.months))
    ]
    if reading:
        return f"segment rules read further back than {span.months} months keep: {', '.join(reading)}"
    return None
