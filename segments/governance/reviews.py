"""Recording a review: checked, snapshotted, acted on and stored at once, or refused with nothing written.

`keep` records the review. `adjust` saves the new rule the reviewer wrote (validated like any
edit) and links the rule version it made; it is refused for a segment that requires approval of
rule changes (segments/governance/approval.py), whose edits wait as drafts instead. `retire`
archives the segment; `merge` archives it in favour of a surviving segment it names. Both are
refused while anything depends on the segment (child segments, rules reading it, activations,
automations, campaign variants, experiments), each dependant named. A refusal is a
ValidationError keyed by the field at fault.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from segments.editing import save_segment, segment_dependants
from segments.graph import dependants, dependency_graph
from segments.locks import lock_segment_graph
from segments.models import Review, ReviewDecision, ReviewKind, RuleVersion, Segment, SegmentStatus

from .approval import needs_approval
from .snapshot import take_snapshot
from .usage import use_counts


def _choice(value: object, choices: type[models.Choices], *, noun: str) -> str | None:
    if value in choices.values:
        return None
    return f"{value!r} is not a {noun}; use one of {', '.join(choices.values)}."


def _merge_errors(segment: Segment, target: Segment | None) -> str | None:
    if target is None:
        return "A merge names the segment that survives it."
    if target.pk == segment.pk:
        return f"A segment cannot be merged into itself ({segment.slug})."
    if target.status == SegmentStatus.ARCHIVED:
        return f"Segment {target.name!r} ({target.slug}) is archived; merge into an active segment."
    if target.pk in dependants(dependency_graph(), segment.pk):
        return (
            f"{target.slug} depends on {segment.slug} (as a child or through in_segment); merging {segment.slug} "
            f"into it would make a cycle: {target.slug} -> {segment.slug} -> {target.slug}."
        )
    return None


def in_use(segment: Segment) -> list[str]:
    """Everything that depends on the segment, as a user would name it."""
    named = segment_dependants(segment)
    for what, n in sorted(use_counts([segment.pk]).get(segment.pk, {}).items()):
        named.append(f"{n} {what.lower()}")
    return named


def _errors(segment: Segment, *, kind: object, decision: object, new_rule: object, merge_into: Segment | None) -> dict:
    errors: dict[str, str] = {}
    if segment.status == SegmentStatus.ARCHIVED:
        errors["segment"] = (
            f"Segment {segment.name!r} ({segment.slug}) is archived; archived segments are not reviewed."
        )
    for field, value, choices, noun in (
        ("kind", kind, ReviewKind, "review kind"),
        ("decision", decision, ReviewDecision, "decision"),
    ):
        if message := _choice(value, choices, noun=noun):
            errors[field] = message
    if decision == ReviewDecision.MERGE and (message := _merge_errors(segment, merge_into)):
        errors["merged_into"] = message
    if decision != ReviewDecision.MERGE and merge_into is not None:
        errors["merged_into"] = "Only a merge names a surviving segment."
    if decision == ReviewDecision.ADJUST:
        if not new_rule:
            errors["rule"] = "An adjustment gives the new rule."
        elif new_rule == segment.rule:
            errors["rule"] = "The new rule is the same as the current one; record 'keep' instead."
        elif needs_approval(segment):
            errors["decision"] = (
                f"Segment {segment.name!r} requires approval of rule changes, so a review cannot publish one: "
                "edit the rule on the segment (it becomes a draft another Operations user approves) and record "
                "this review as 'keep'."
            )
    elif new_rule is not None:
        errors["rule"] = "Only an adjustment changes the rule."
    archiving = decision in (ReviewDecision.RETIRE, ReviewDecision.MERGE) and "segment" not in errors
    if archiving and (named := in_use(segment)):
        errors["decision"] = (
            f"Segment {segment.name!r} cannot be archived while others depend on it: {'; '.join(named)}."
        )
    return errors


def record_review(
    segment: Segment,
    *,
    kind: str,
    decision: str,
    recorded_by: str,
    reviewer=None,
    notes: str = "",
    new_rule: object = None,
    merge_into: Segment | None = None,
    now: datetime | None = None,
) -> Review:
    """Record a completed review and carry out its decision, in one transaction."""
    now = now or timezone.now()
    with transaction.atomic():
        lock_segment_graph()
        segment = Segment.objects.select_for_update().get(pk=segment.pk)
        errors = _errors(segment, kind=kind, decision=decision, new_rule=new_rule, merge_into=merge_into)
        if errors:
            raise ValidationError(errors)
        snapshot = take_snapshot(segment, now=now)
        version = None
        if decision == ReviewDecision.ADJUST:
            segment.rule = new_rule
            save_segment(segment, user=reviewer, note=notes or f"{ReviewKind(kind).label} review: adjust")
            version = RuleVersion.objects.filter(segment=segment).order_by("-id").first()
        elif decision in (ReviewDecision.RETIRE, ReviewDecision.MERGE):
            segment.status = SegmentStatus.ARCHIVED
            save_segment(segment, user=reviewer)
        return Review.objects.create(
            segment=segment,
            kind=kind,
            reviewer=reviewer,
            recorded_by=recorded_by,
            reviewed_at=now,
            decision=decision,
            notes=notes,
            snapshot=snapshot,
            rule_version=version,
            merged_into=merge_into if decision == ReviewDecision.MERGE else None,
        )
