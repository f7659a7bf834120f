"""Who should be in a segment: its rule's matches within its parent's members, as one queryset
(`target_contacts`), or as the SQL of one (`target_sql`, compiled once per process)."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime

from django.db.models import Expression, QuerySet

from contacts.models import Contact
from segments.models import Membership, Segment
from segments.rules.compiler import Thresholds, matching_contacts
from segments.rules.registry import Field
from segments.rules.validation import referenced_slugs
from segments.statements import compiled_sql, fields_fingerprint


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


def target_sql(
    segment: Segment, *, now: datetime, fields: dict[str, Field], thresholds: Thresholds
) -> tuple[str, list]:
    """`target_contacts` of the whole segment as SQL and params, compiled once per process for the
    rule, parent, thresholds, field registry and the ids of the segments the rule reads
    (segments/statements.py). Raises InvalidRule like `target_contacts`.
    """
    slugs = referenced_slugs(segment.rule)
    # An in_segment slug compiles to that segment's id (and to nobody when none has it), so the ids
    # are part of what the SQL was compiled from; a rule reading no segment needs no query here.
    read = sorted(Segment.objects.filter(slug__in=slugs).values_list("slug", "pk")) if slugs else []
    key = (
        "full",
        segment.pk,
        json.dumps(segment.rule, sort_keys=True),
        segment.parent_id,
        json.dumps(thresholds, sort_keys=True),
        fields_fingerprint(fields),
        tuple(read),
    )
    return compiled_sql(key, lambda at: _compile(segment, now=at, fields=fields, thresholds=thresholds), now=now)


def _compile(segment: Segment, *, now: datetime, fields: dict[str, Field], thresholds: Thresholds) -> tuple[str, list]:
    target = target_contacts(segment, now=now, fields=fields, thresholds=thresholds)
    sql, params = target.order_by().values("pk").query.sql_with_params()
    return sql, list(params)
