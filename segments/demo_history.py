"""A year of membership history for the demo (`load_catalog --history WEEKS`, which `make run` uses).

The rule segments are replayed at weekly points over the past weeks, oldest first: at each point
the contacts are rewound to what they were then (contacts/demo_as_of.py: lifecycle stage from the
stage history, lead score by the demo's formula, customer fields, metrics as `compute_metrics
--as-of` computes them), and every active rule segment (in dependency order, so parents and
`in_segment` readers see the members of that point) gets the members its rule selects as of that
time, among the contacts that existed then, written by the one membership writer with that time
as the change time. Joins and leaves, lifecycle progressions, sizes and the day rollups behind the
charts then run through the year. Relative dates and event conditions are measured from each point
(activities after it do not count). Today's contacts and metrics are back before the commit.

Two segments had their rules edited during the year (`EDITS`): before the edit they are replayed
with their earlier rule, and the edit is recorded as a rule version at its point, with the size
before and after, so the rule history, the size charts' edit marks and the analytics around an
edit have something to show.

Other apps take part through a participant registered at start-up (`add_participant`), called at
each point once its members are written: activation's demo campaigns (activation/demo_campaigns.py)
start experiments and record sends to the members of that point.

One membership statement per segment and point (a few on SQLite) and one metrics run per point:
52 weeks of the starter catalog on 2,000 demo contacts is about a thousand statements.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import copy
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from contacts.demo_as_of import rewound
from segments.locks import lock_segments
from segments.membership import Target, Written, write_members
from segments.models import ChangeReason, Membership, RuleVersion, Segment, SegmentStatus
from segments.refresh import refresh_order
from segments.rules.registry import Field, get_fields
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


# Called with (the point, how many weeks before now it is) once the point's members are written.
Participant = Callable[[datetime, int], None]
_participants: list[Participant] = []


def add_participant(participant: Participant) -> None:
    """Another app's part in the replay, called at each point in registration order."""
    if participant not in _participants:
        _participants.append(participant)


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
    edits: dict[int, tuple[DemoEdit, dict]] = {
        by_slug[edit.slug].pk: (edit, edit.earlier_rule(by_slug[edit.slug].rule or {}))
        for edit in EDITS
        if edit.slug in by_slug and edit.weeks_ago < weeks
    }
    writes = joins = leaves = 0
    # One transaction: a thousand commits would cost SQLite a thousand syncs to disk.
    first, last = now - timedelta(weeks=weeks), now - timedelta(weeks=1)
    ids = [segment.pk for segment in live]
    with transaction.atomic():
        lock_segments(ids)
        # The segments were made at the first point, with their first rule version.
        Segment.objects.filter(pk__in=ids).update(created_at=first)
        RuleVersion.objects.filter(segment_id__in=ids, old_rule__isnull=True).update(changed_at=first)
        for pk, (_edit, earlier) in edits.items():  # the first version had the earlier rule
            RuleVersion.objects.filter(segment_id=pk, old_rule__isnull=True).update(new_rule=earlier)
        with rewound(now=now) as rewind:
            for week in range(weeks, 0, -1):
                at = now - timedelta(weeks=week)
                rewind(at)
                reason = ChangeReason.INITIAL_BUILD if week == weeks else ChangeReason.RULE
                for segment in live:
                    figures = _replay(segment, edits.get(segment.pk), at=at, week=week, reason=reason, fields=fields)
                    writes += 1
                    joins += figures.added
                    leaves += figures.removed
                for participant in _participants:
                    participant(at, week)
        # Built at every point, the last one included: the refresh that follows is not a first build.
        built = Segment.objects.filter(pk__in=ids)
        built.update(last_refresh_started_at=last, last_refresh_now=last, rule_edited_at=None)
    return History(points=weeks, writes=writes, joins=joins, leaves=leaves)


def _replay(
    segment: Segment,
    edit: tuple[DemoEdit, dict] | None,
    *,
    at: datetime,
    week: int,
    reason: str,
    fields: dict[str, Field],
) -> Written:
    """Write the segment's members as of `at` (with its earlier rule before its edit, if any)."""
    replayed = segment
    if edit is not None and week > edit[0].weeks_ago:
        replayed = copy(segment)
        replayed.rule = edit[1]
    edited = edit is not None and week == edit[0].weeks_ago
    before = Membership.objects.filter(segment=segment).count() if edited else 0
    contacts = target_contacts(replayed, now=at, fields=fields).filter(created_at__lte=at)
    written = write_members([Target(segment, contacts, reason=reason)], changed_at=at)[segment.pk]
    if reason == ChangeReason.INITIAL_BUILD:
        RuleVersion.objects.filter(segment=segment, old_rule__isnull=True).update(size_after=written.size)
    if edit is not None and edited:
        RuleVersion.objects.create(
            segment=segment, old_rule=edit[1], new_rule=segment.rule, changed_by=segment.owner, changed_at=at,
            note=edit[0].note, size_before=before, size_after=before + written.added - written.removed,
        )  # fmt: skip
    return written
