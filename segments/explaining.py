"""Explaining saved segments: their rules, with the percent thresholds their refreshes used, and
the merges that hold a contact in a suppression segment.

Public: `explain_segment(segment, contact, *, now, fields=None, facts=None) -> Explanation`,
`explain_segments(segments, contact, *, now, fields, facts=None, held=None) -> list[Explanation | InvalidRule]`,
`held_reasons(segment_ids, contact_ids) -> dict[(segment_id, contact_id), list[str]]`.

A segment's top/bottom_percent conditions are decided by the thresholds its last full refresh
stored (segments/rules/thresholds.py); explaining its membership with live thresholds could
contradict the stored membership, so these pass the stored ones. An unsaved rule (the builder's
preview) is explained with `explain` directly and measures them live.

A suppression segment's target is its rule's matches plus the contacts merges hold in it
(segments/targets.py); its explanation carries the same holds (`Explanation.held`), so the
explainer and the refresh agree on who is a member and the page says why.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.utils import formats, timezone

from contacts.models import Contact
from segments.models import Segment, SegmentKind, SuppressionHold
from segments.rules.explainer import ContactFacts, Explanation, Node, explain
from segments.rules.registry import Field
from segments.rules.validation import InvalidRule

Held = dict[tuple[int, int], list[str]]


def explain_segment(
    segment: Segment,
    contact: Contact,
    *,
    now: datetime,
    fields: dict[str, Field] | None = None,
    facts: ContactFacts | None = None,
) -> Explanation:
    """The segment's rule for the contact, with its holds; raises InvalidRule like `explain`.
    Queries for holds only for a suppression segment."""
    explanation = explain(
        segment.rule, contact, now=now, fields=fields, thresholds=segment.percent_thresholds, facts=facts
    )
    if _holdable(segment):
        explanation.held = held_reasons([segment.pk], [contact.pk]).get((segment.pk, contact.pk), [])
    return explanation


def explain_segments(
    segments: list[Segment],
    contact: Contact,
    *,
    now: datetime,
    fields: dict[str, Field],
    facts: ContactFacts | None = None,
    held: Held | None = None,
) -> list[Explanation | InvalidRule]:
    """Each segment's explanation for one contact (paths relative to its own rule), or its error.

    One explainer pass reads the contact, its activities and memberships once for all of them,
    unless their stored thresholds disagree on a condition or a rule is invalid (then one each).
    With `facts` (loaded by `load_facts` for a rule covering these segments' rules) nothing is read.
    Holds are read in one query when a suppression segment is among them, unless `held` (from
    `held_reasons` for many contacts at once) is given.
    """
    if held is None:
        holdable = [segment.pk for segment in segments if _holdable(segment)]
        held = held_reasons(holdable, [contact.pk]) if holdable else {}
    return [
        Explanation(root, held.get((segment.pk, contact.pk), [])) if isinstance(root, Node) else root
        for segment, root in zip(segments, _roots(segments, contact, now=now, fields=fields, facts=facts), strict=True)
    ]


def held_reasons(segment_ids: Collection[int], contact_ids: Collection[int]) -> Held:
    """Why merges hold these contacts in these segments, by (segment id, contact id): one query."""
    found: Held = {}
    holds = SuppressionHold.objects.filter(segment_id__in=segment_ids, contact_id__in=contact_ids)
    for hold in holds.select_related("merge").order_by("merge__merged_at", "pk"):
        merge = hold.merge
        on = formats.date_format(timezone.localtime(merge.merged_at), "j M Y")
        found.setdefault((hold.segment_id, hold.contact_id), []).append(
            f"Held by the merge of {merge.loser_email} (contact {merge.loser_id}) into this contact on {on}: "
            "a merge never lets a suppressed person out"
        )
    return found


def _holdable(segment: Segment) -> bool:
    return segment.kind == SegmentKind.SUPPRESSION and segment.pk is not None


def _roots(
    segments: list[Segment],
    contact: Contact,
    *,
    now: datetime,
    fields: dict[str, Field],
    facts: ContactFacts | None,
) -> list[Node | InvalidRule]:
    merged: dict = {}
    for segment in segments:
        for key, value in segment.percent_thresholds.items():
            if merged.setdefault(key, value) != value:
                return [_explain_one(segment, contact, now=now, fields=fields, facts=facts) for segment in segments]
    try:
        combined = {"any": [segment.rule for segment in segments]}
        root = explain(combined, contact, now=now, fields=fields, thresholds=merged, facts=facts).root
    except InvalidRule:
        return [_explain_one(segment, contact, now=now, fields=fields, facts=facts) for segment in segments]
    return [_rebased(node, prefix=f"any[{i}]") for i, node in enumerate(root.children)]


def _explain_one(
    segment: Segment, contact: Contact, *, now: datetime, fields: dict[str, Field], facts: ContactFacts | None
) -> Node | InvalidRule:
    try:
        return explain(
            segment.rule, contact, now=now, fields=fields, thresholds=segment.percent_thresholds, facts=facts
        ).root
    except InvalidRule as error:
        return error


def _rebased(node: Node, *, prefix: str) -> Node:
    node.path = node.path[len(prefix) :].lstrip(".")
    for child in node.children:
        _rebased(child, prefix=prefix)
    return node
