"""What segments hold back from activity retention (contacts/retention.py): a month of activities
goes only once the analytics rollups have rolled it up, and while no live segment's rule counts
activities further back than retention keeps."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection
from django.utils import timezone

from contacts.partitions import DEFAULT_PARTITION, existing_months, month_start, partition_name
from contacts.retention import Span
from segments.models import AnalyticsDirtyHour, AnalyticsSource, AnalyticsState, Segment, SegmentStatus
from segments.rules.validation import retention_errors


def rolled_up(span: Span) -> str | None:
    """The analytics have rolled up every day of the span (computed through its last local day) and
    every change to its activities (no changed hour of its table waits for the update).
    Periods stored then are never recomputed from fewer activities unless a late activity or a
    backfill reopens them (docs/scale.md, "Retention")."""
    state = AnalyticsState.objects.order_by("pk").first()
    if state is None or state.computed_through is None:
        return "the analytics have never been computed"
    last_day = timezone.localdate(span.end)
    if state.computed_through < last_day:
        return f"the analytics are computed through {state.computed_through}, not yet {last_day}"
    waiting = unread_hours(span)
    if waiting:
        return f"the analytics have not yet read activities changed at {waiting[0]:%Y-%m-%d %H}:00 UTC"
    return None


def unread_hours(span: Span) -> list[datetime]:
    """The hours of the span's table (its UTC month, or DEFAULT's months without a partition)
    holding activity changes the analytics update has not read yet."""
    hours = AnalyticsDirtyHour.objects.filter(source=AnalyticsSource.ACTIVITY, hour__lt=span.end)
    waiting = list(hours.order_by("hour").values_list("hour", flat=True).distinct())
    with connection.cursor() as cursor:
        partitions = {partition_name(month) for month in existing_months(cursor)}
    tables = [partition_name(month_start(hour.astimezone(UTC).date())) for hour in waiting]
    if span.table == DEFAULT_PARTITION:
        return [hour for hour, table in zip(waiting, tables, strict=True) if table not in partitions]
    return [hour for hour, table in zip(waiting, tables, strict=True) if table == span.table]


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
