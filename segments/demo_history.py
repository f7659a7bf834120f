"""A year of membership history for the demo (`load_catalog --history WEEKS`, which `make run` uses).

The rule segments are replayed at weekly points over the past weeks, oldest first: at each point
every active rule segment (in dependency order, so parents and `in_segment` readers see the
members of that point) gets the members its rule selects as of that time, among the contacts that
existed then, written by the one membership writer with that time as the change time. Joins and
leaves, sizes and the day rollups behind the charts then run through the year. Relative dates and
event conditions are measured from each point (activities after it do not count); fields without
a history of their own (a contact's current stage, score and metrics) are read as they are now.

Two segments had their rules edited during the year (`EDITS`): before the edit they are replayed
with their earlier rule, and the edit is recorded as a rule version at its point, with the size
before and after, so the rule history, the size charts' edit marks and the analytics around an
edit have something to show.

One membership statement per segment and point (a few on SQLite): 52 weeks of the starter catalog
on 2,000 demo contacts is about a thousand statements.
"""

from __future__ import annotations

from copy import copy
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from segments.locks import lock_segments
from segments.membership import Target, write_members
from segments.models import ChangeReason, Membership, RuleVersion, Segment, SegmentStatus
from segments.refresh import refresh_order
from segments.rules.registry import get_fields
from segments.targets import target_contacts


@dataclass(frozen=True)
class DemoEdit:
    """Until `weeks_ago`, the catalog segment's condition on `field` had `earlier_value`; then
    someone changed it and said why."""

    slug: str
    weeks_ago: int
    field: str
    earlier_value: object
    note: str

    def earlier_rule(self, rule: dict) -> dict:
        """`rule` with this edit undone (the condition on `field` given its earlier value)."""
        if rule.get("field") == self.field:
            return {**rule, "value": self.earlier_value}
        for group in ("all", "any"):
            if group in rule:
                return {group: [self.earlier_rule(child) for child in rule[group]]}
        return rule


EDITS = [
    DemoEdit(
        "enterprise",
        20,
        "company.employee_count",
        2000,
        "The enterprise team takes on companies from 1,000 employees (was 2,000) after the territory review.",
    ),
    DemoEdit(
        "icp-below-mql",
        12,
        "company.employee_count",
        500,
        "ICP widened to 200+ employees (was 500+): the quarterly boundary test found 200–499 converts like 500+.",
    ),
]


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
    by_slug = {segment.slug: segment for segment in live}
    edits: dict[int, tuple[DemoEdit | None, dict | None]] = {
        by_slug[edit.slug].pk: (edit, edit.earlier_rule(by_slug[edit.slug].rule or {}))
        for edit in EDITS
        if edit.slug in by_slug and edit.weeks_ago < weeks
    }
    writes = joins = leaves = 0
    # One transaction: a thousand commits would cost SQLite a thousand syncs to disk.
    with transaction.atomic():
        lock_segments([segment.pk for segment in live])
        for pk, (_edit, earlier) in edits.items():  # the first version had the earlier rule, from the first point
            RuleVersion.objects.filter(segment_id=pk, old_rule__isnull=True).update(
                new_rule=earlier, changed_at=now - timedelta(weeks=weeks)
            )
        for week in range(weeks, 0, -1):
            at = now - timedelta(weeks=week)
            reason = ChangeReason.INITIAL_BUILD if week == weeks else ChangeReason.RULE
            for segment in live:
                edit, earlier = edits.get(segment.pk) or (None, None)
                replayed = segment
                if edit is not None and week > edit.weeks_ago:
                    replayed = copy(segment)
                    replayed.rule = earlier
                edited = edit is not None and week == edit.weeks_ago
                before = Membership.objects.filter(segment=segment).count() if edited else 0
                contacts = target_contacts(replayed, now=at, fields=fields).filter(created_at__lte=at)
                written = write_members([Target(segment, contacts, reason=reason)], changed_at=at)[segment.pk]
                if edited and edit is not None:
                    RuleVersion.objects.create(
                        segment=segment, old_rule=earlier, new_rule=segment.rule, changed_by=segment.owner,
                        changed_at=at, note=edit.note, size_before=before,
                        size_after=before + written.added - written.removed,
                    )  # fmt: skip
                writes += 1
                joins += written.added
                leaves += written.removed
    return History(points=weeks, writes=writes, joins=joins, leaves=leaves)
