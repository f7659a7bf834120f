"""Approval before publish (issue 17 item 8): rule edits of governed segments wait as drafts.

A segment requires approval when its `requires_approval` says so, or, left empty, while it feeds
an enabled activation or automation. An edit of its rule (admin or API, through `save_or_propose`)
saves everything else at once but keeps the live rule: the new rule becomes a pending RuleDraft,
with its author and a change note (required). Another Operations user approves it (`approve_draft`:
the rule version is recorded with author and approver, the draft marked published, in one
transaction) or rejects it. Nobody approves their own draft; a draft made against a live rule that
has changed since must be rebased (`rebase_draft`) and approved again. A refusal is a
ValidationError keyed by the field at fault, and nothing is written.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from contacts.roles import OPERATIONS
from segments.editing import check_segment, save_segment
from segments.locks import lock_segment_graph
from segments.models import DraftStatus, RuleDraft, RuleVersion, Segment
from segments.rules.validation import validate_rule

from .usage import enabled_users


def needs_approval(segment: Segment) -> bool:
    """Whether rule edits of this (saved) segment wait for approval."""
    if segment.pk is None:
        return False
    if segment.requires_approval is not None:
        return segment.requires_approval
    return segment.pk in enabled_users([segment.pk])


def may_approve(user) -> bool:
    """Operations staff (or a superuser), active: the people who govern segments."""
    if user is None or not user.is_active:
        return False
    return user.is_superuser or (user.is_staff and user.groups.filter(name=OPERATIONS).exists())


def note_error(segment: Segment, *, rule_changed: bool, note: str) -> str | None:
    if rule_changed and not note.strip() and needs_approval(segment):
        return (
            f"Segment {segment.name!r} requires approval of rule changes: say why the rule changes "
            "(the approver reads it with the diff)."
        )
    return None


def _latest_version(segment_id: int) -> RuleVersion | None:
    return RuleVersion.objects.filter(segment=segment_id).order_by("-id").first()


def save_or_propose(segment: Segment, *, user=None, note: str = "") -> RuleDraft | None:
    """Save an edited segment; for one that requires approval, a changed rule becomes a draft
    (returned) and the live rule stays. Raises ValidationError like save_segment, or for a
    missing change note ({"change_note": ...})."""
    if segment.pk is None:
        save_segment(segment, user=user, note=note)
        return None
    with transaction.atomic():
        lock_segment_graph()
        stored = Segment.objects.select_for_update().get(pk=segment.pk)
        rule_changed = segment.rule != stored.rule
        if not (rule_changed and needs_approval(stored)):
            save_segment(segment, user=user, note=note)
            return None
        if message := note_error(stored, rule_changed=True, note=note):
            raise ValidationError({"change_note": message})
        check_segment(segment)  # the draft's rule is checked now, not at approval time only
        proposed = segment.rule
        segment.rule = stored.rule
        save_segment(segment, user=user)
        return RuleDraft.objects.create(
            segment=segment,
            rule=proposed,
            base_rule=stored.rule,
            base_version=_latest_version(segment.pk),
            note=note.strip(),
            author=user,
        )


def stale_message(draft: RuleDraft) -> str | None:
    """Why the draft must be rebased: the live rule changed after it was made (None when current)."""
    latest = _latest_version(draft.segment_id)
    if latest is None or latest.pk == draft.base_version_id:
        return None
    by = latest.changed_by.get_username() if latest.changed_by else "the system"
    return (
        f"The live rule of {draft.segment.name!r} changed after this draft was made "
        f"({timezone.localtime(latest.changed_at):%Y-%m-%d %H:%M} by {by}). Rebase the draft on the live rule, "
        "check the diff and the impact again, and have it approved then."
    )


def _pending(draft: RuleDraft) -> RuleDraft:
    """The draft re-read under a row lock; refused unless it is still pending."""
    draft = RuleDraft.objects.select_for_update(of=("self",)).select_related("segment", "author").get(pk=draft.pk)
    if draft.status != DraftStatus.PENDING:
        raise ValidationError({"status": f"Draft #{draft.pk} is already {draft.get_status_display().lower()}."})
    return draft


def approve_draft(draft: RuleDraft, *, approver, now: datetime | None = None) -> RuleVersion:
    """Publish a pending draft: the segment takes its rule, the version records author and approver."""
    with transaction.atomic():
        lock_segment_graph()
        draft = _pending(draft)
        if approver is None:
            raise ValidationError({"approver": "A draft is approved by a person; an API key alone cannot approve."})
        if draft.author_id is not None and approver.pk == draft.author_id:
            raise ValidationError(
                {"approver": f"{approver.get_username()} wrote draft #{draft.pk}; another Operations user approves it."}
            )
        if not may_approve(approver):
            raise ValidationError({"approver": f"{approver.get_username()} is not an Operations user."})
        if message := stale_message(draft):
            raise ValidationError({"base_version": message})
        segment = Segment.objects.select_for_update().get(pk=draft.segment_id)
        if segment.rule == draft.rule:
            raise ValidationError({"rule": "The draft's rule is already the live rule; reject the draft instead."})
        segment.rule = draft.rule
        save_segment(segment, user=draft.author, note=draft.note, approved_by=approver)
        version = _latest_version(segment.pk)
        assert version is not None  # save_segment recorded the new rule's version
        draft.status, draft.decided_by, draft.decided_at = DraftStatus.APPROVED, approver, now or timezone.now()
        draft.version = version
        draft.save(update_fields=["status", "decided_by", "decided_at", "version"])
        return version


def reject_draft(draft: RuleDraft, *, user, reason: str = "", now: datetime | None = None) -> RuleDraft:
    """Close a pending draft without publishing it (its author may reject their own)."""
    with transaction.atomic():
        draft = _pending(draft)
        if user is None or not (may_approve(user) or user.pk == draft.author_id):
            raise ValidationError({"user": "A draft is rejected by its author or an Operations user."})
        draft.status, draft.decided_by, draft.decided_at = DraftStatus.REJECTED, user, now or timezone.now()
        draft.decision_note = reason.strip()
        draft.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
        return draft


def rebase_draft(draft: RuleDraft, *, user) -> RuleDraft:
    """Make a stale draft current: its diff and impact are then read against today's live rule."""
    with transaction.atomic():
        lock_segment_graph()
        draft = _pending(draft)
        if user is None or not (may_approve(user) or user.pk == draft.author_id):
            raise ValidationError({"user": "A draft is rebased by its author or an Operations user."})
        segment = Segment.objects.get(pk=draft.segment_id)
        slugs = set(Segment.objects.values_list("slug", flat=True))
        if errors := validate_rule(draft.rule, segment_slugs=slugs):
            raise ValidationError({"rule": [str(error) for error in errors]})
        draft.base_rule, draft.base_version = segment.rule, _latest_version(segment.pk)
        draft.save(update_fields=["base_rule", "base_version"])
        return draft
