"""Explaining saved segments: their rules, with the percent thresholds their refreshes used.

Public: `explain_segment(segment, contact, *, now, fields=None)`,
`explain_segments(segments, contact, *, now, fields, facts=None) -> list[Node | InvalidRule]`.

A segment's top/bottom_percent conditions are decided by the thresholds its last full refresh
stored (segments/rules/thresholds.py); explaining its membership with live thresholds could
contradict the stored membership, so these pass the stored ones. An unsaved rule (the builder's
preview) is explained with `explain` directly and measures them live.
"""

from __future__ import annotations

from datetime import datetime

from contacts.models import Contact
from segments.models import Segment
from segments.rules.explainer import ContactFacts, Explanation, Node, explain
from segments.rules.registry import Field
from segments.rules.validation import InvalidRule


def explain_segment(
    segment: Segment,
    contact: Contact,
    *,
    now: datetime,
    fields: dict[str, Field] | None = None,
    facts: ContactFacts | None = None,
) -> Explanation:
    """The segment's rule for the contact; raises InvalidRule like `explain`."""
    return explain(segment.rule, contact, now=now, fields=fields, thresholds=segment.percent_thresholds, facts=facts)


def explain_segments(
    segments: list[Segment],
    contact: Contact,
    *,
    now: datetime,
    fields: dict[str, Field],
    facts: ContactFacts | None = None,
) -> list[Node | InvalidRule]:
    """Each segment's rule tree for one contact (paths relative to its own rule), or its error.

    One explainer pass reads the contact, its activities and memberships once for all of them,
    unless their stored thresholds disagree on a condition or a rule is invalid (then one each).
    With `facts` (loaded by `load_facts` for a rule covering these segments' rules) nothing is read.
    """
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
        return explain_segment(segment, contact, now=now, fields=fields, facts=facts).root
    except InvalidRule as error:
        return error


def _rebased(node: Node, *, prefix: str) -> Node:
    node.path = node.path[len(prefix) :].lstrip(".")
    for child in node.children:
        _rebased(child, prefix=prefix)
    return node
