"""Segments' part in merging contacts (contacts/merging.py): memberships move, suppressions hold.

In a merge, every segment the loser was in gets the survivor instead (the loser leaves, the
survivor joins where it was not a member), in one `write_members` call recorded with reason
`merge`; and the survivor is held (SuppressionHold) in every suppression segment either contact
was in, so that no refresh lets the suppressed person out because the merged values stop matching
the rule. Dynamic segments then refresh the survivor after commit (its data changed), so it stays
only where its rule and the holds keep it. Undo reverses both: the loser rejoins its segments, the
survivor leaves those it joined through the merge, the holds go.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.utils import timezone

from contacts.merging import MergeParticipant
from contacts.models import Contact, ContactMerge
from segments.locks import lock_segments
from segments.membership import Target, write_members
from segments.models import ChangeReason, Membership, Segment, SegmentKind, SuppressionHold


def move_memberships(merge: ContactMerge, by: User | None) -> dict:
    """The loser's memberships go to the survivor; returns what undo needs."""
    loser, survivor = merge.loser_id, merge.survivor_id
    rows = list(
        Membership.objects.filter(contact_id__in=[loser, survivor]).values_list(
            "segment_id", "contact_id", "segment__kind"
        )
    )
    loser_segments = sorted({s for s, c, _ in rows if c == loser})
    survivor_segments = {s for s, c, _ in rows if c == survivor}
    suppressions = sorted({s for s, _, kind in rows if kind == SegmentKind.SUPPRESSION})
    if loser_segments:
        _write(loser_segments, contact_ids=[loser, survivor], members=lambda segment_id: [survivor], by=by)
    SuppressionHold.objects.bulk_create(
        SuppressionHold(segment_id=segment_id, contact_id=survivor, merge=merge) for segment_id in suppressions
    )
    return {
        "loser_segments": loser_segments,
        "survivor_joined": [s for s in loser_segments if s not in survivor_segments],
        "held_in": suppressions,
    }


def restore_memberships(merge: ContactMerge, record: dict, by: User | None) -> None:
    """Undo: the holds go, the loser rejoins its segments, the survivor leaves those it joined by the merge."""
    SuppressionHold.objects.filter(merge=merge).delete()
    joined = set(record["survivor_joined"])
    survivor, loser = merge.survivor_id, merge.loser_id
    _write(
        record["loser_segments"],
        contact_ids=[loser, survivor],
        members=lambda segment_id: [loser] if segment_id in joined else [loser, survivor],
        by=by,
    )


def _write(segment_ids: list[int], *, contact_ids: list[int], members, by: User | None) -> None:
    """One write_members call for these segments (those that still exist), under their locks."""
    segments = list(Segment.objects.filter(pk__in=segment_ids).order_by("pk"))
    lock_segments([s.pk for s in segments])
    targets = [Target(s, Contact.objects.filter(pk__in=members(s.pk)), reason=ChangeReason.MERGE) for s in segments]
    write_members(targets, contact_ids=contact_ids, changed_at=timezone.now(), actor=by)


PARTICIPANT = MergeParticipant("segments", apply=move_memberships, undo=restore_memberships)
