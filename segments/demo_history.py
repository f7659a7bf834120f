"""A year of membership history for the demo (`load_catalog --history WEEKS`, which `make run` uses).

The rule segments are replayed at weekly points over the past weeks, oldest first: at each point
every active rule segment (in dependency order, so parents and `in_segment` readers see the
members of that point) gets the members its rule selects as of that time, among the contacts that
existed then, written by the one membership writer with that time as the change time. Joins and
leaves, sizes and the day rollups behind the charts then run through the year. Relative dates and
event conditions are measured from each point (activities after it do not count); fields without
a history of their own (a contact's current stage, score and metrics) are read as they are now.

One membership statement per segment and point (a few on SQLite): 52 weeks of the starter catalog
on 2,000 demo contacts is about a thousand statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from segments.locks import lock_segments
from segments.membership import Target, write_members
from segments.models import ChangeReason, Segment, SegmentStatus
from segments.refresh import refresh_order
from segments.rules.registry import get_fields
from segments.targets import target_contacts


@dataclass(frozen=True)
class History:
    points: int
    writes: int
    joins: int
    leaves: int


def build_history(*, now: datetime, weeks: int) -> History:
    """Replay every active rule segment at `weeks` weekly points before `now` (now excluded)."""
    if weeks < 1:
        raise ValueError(f"weeks must be at least 1; got {weeks}")
    order = refresh_order()
    segments = Segment.objects.in_bulk(order)
    live = [segments[pk] for pk in order if segments[pk].is_rule_based and segments[pk].status == SegmentStatus.ACTIVE]
    fields = get_fields()
    writes = joins = leaves = 0
    # One transaction: a thousand commits would cost SQLite a thousand syncs to disk.
    with transaction.atomic():
        lock_segments([segment.pk for segment in live])
        for week in range(weeks, 0, -1):
            at = now - timedelta(weeks=week)
            reason = ChangeReason.INITIAL_BUILD if week == weeks else ChangeReason.RULE
            for segment in live:
                contacts = target_contacts(segment, now=at, fields=fields).filter(created_at__lte=at)
                written = write_members([Target(segment, contacts, reason=reason)], changed_at=at)[segment.pk]
                writes += 1
                joins += written.added
                leaves += written.removed
    return History(points=weeks, writes=writes, joins=joins, leaves=leaves)
