"""The daily rollup of membership changes (SegmentDay), kept in step by the code that writes them.

Every writer of MembershipChange rows (full and scoped refreshes, static member edits) calls
`count_changes` inside its transaction with the numbers it just wrote: one upsert adds them to
the segment's row for that day and records the segment's size after them. Charts then read at
most one row per segment and day instead of grouping the change log.
"""

from datetime import date, datetime

from django.db import connection
from django.utils import timezone

from segments.models import Segment, SegmentDay

DAY = SegmentDay._meta.db_table
SEGMENT = Segment._meta.db_table
# How a day's row takes more changes: joins and leaves add up, the size is the latest.
ADD_TO_DAY = f"""ON CONFLICT (segment_id, day) DO UPDATE SET joins = {DAY}.joins + excluded.joins,
    leaves = {DAY}.leaves + excluded.leaves, size = excluded.size"""


def count_changes(segment_id: int, *, changed_at: datetime, joins: int, leaves: int) -> None:
    """Add joins and leaves to the segment's day and set that day's size to the segment's size now.

    Call after the segment's `size` column has been updated, in the same transaction (the
    segment lock keeps two writers of one segment apart).
    """
    if not joins and not leaves:
        return
    day = timezone.localdate(changed_at)
    with connection.cursor() as cursor:
        # "WHERE true" lets SQLite parse ON CONFLICT after INSERT ... SELECT.
        cursor.execute(
            f"""INSERT INTO {DAY} (segment_id, day, joins, leaves, size)
            SELECT id, %s, %s, %s, size FROM {SEGMENT} WHERE id = %s AND true
            {ADD_TO_DAY}""",
            [connection.ops.adapt_datefield_value(day), joins, leaves, segment_id],
        )


def days_since(segment_ids: list[int], *, first_day: date) -> dict[int, dict[date, SegmentDay]]:
    """segment id -> day -> its rollup row, for days from `first_day` on, in one query."""
    rows = SegmentDay.objects.filter(segment_id__in=segment_ids, day__gte=first_day).order_by()
    days: dict[int, dict[date, SegmentDay]] = {pk: {} for pk in segment_ids}
    for row in rows:
        days[row.segment_id][row.day] = row
    return days
