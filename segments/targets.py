"""Who should be in a segment: its rule's matches within its parent's members, as one queryset."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db.models import Expression, QuerySet

from contacts.models import Contact
from segments.models import Membership, Segment
from segments.rules.compiler import Thresholds, matching_contacts
from segments.rules.registry import Field


def target_contacts(
    segment: Segment,
    *,
    now: datetime,
    fields: dict[str, Field] | None = None,
    contact_ids: Collection[int] | Expression | None = None,
    thresholds: Thresholds | None = None,
) -> QuerySet[Contact]:
    """Who should be a member at `now`: the rule's matches, within the parent's members.

    `thresholds`: top/bottom_percent thresholds to use (see rules/thresholds.py); without them
    they are measured live. Raises InvalidRule (naming JSON paths) when the rule no longer
    validates, e.g. after a property it uses was deleted.
    """
    target = matching_contacts(segment.rule, now=now, fields=fields, contact_ids=contact_ids, thresholds=thresholds)
    if segment.parent_id is not None:
        target = target.filter(pk__in=Membership.objects.filter(segment_id=segment.parent_id).values("contact_id"))
    return target
