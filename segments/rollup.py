"""The daily rollup of membership changes (SegmentDay), as the charts read it.

Every write of membership adds its joins and leaves to the segment's row for the day and records
the segment's size after them (segments/membership.py), so charts read at most one row per
segment and day instead of grouping the change log.
"""

from datetime import date

from segments.models import SegmentDay


def days_since(segment_ids: list[int], *, first_day: date) -> dict[int, dict[date, SegmentDay]]:
    """segment id -> day -> its rollup row, for days from `first_day` on, in one query."""
    rows = SegmentDay.objects.filter(segment_id__in=segment_ids, day__gte=first_day).order_by()
    days: dict[int, dict[date, SegmentDay]] = {pk: {} for pk in segment_ids}
    for row in rows:
        days[row.segment_id][row.day] = row
    return days
