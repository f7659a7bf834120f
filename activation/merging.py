"""Activation's part in merging contacts (contacts/merging.py): no merge while an export reads them,
and what the destinations already have passes to the survivor.

A running export reads its segment's members and writes what it sent; merging one of them away
meanwhile would leave the export's snapshot naming a contact that no longer exists (or, undone,
one that was gone when it ran). The merge is refused until the run ends.

The snapshot (ExportedMember, the base of each delta run) names the contacts each destination
has. A destination matches people by what it was sent (hashed e-mail, phone ...), and the merged
pair is one person it already has under the loser's identifiers. So where the loser was exported
and the survivor was not, the loser's snapshot row becomes the survivor's, removal row and all:
the next delta run neither removes the loser nor adds the survivor (removing the person and adding
them back would churn the ad platforms' audiences and their match statistics), and when the
survivor leaves the segment, the removal sends what the destination was given. Where both were
exported, each keeps its row: the next delta run removes the loser's identifiers (the duplicate)
and the person stays through the survivor's. Undo gives the rows back to the loser, unless a run
since sent the survivor's own identifiers in their place (a full run rewrites removal rows): such
a row now describes the survivor, and stays with it.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef

from activation.models import ExportedMember, ExportRun, RunStatus
from contacts.merging import MergeParticipant
from contacts.models import ContactMerge
from segments.models import Membership


def refuse_during_export(contact_ids: list[int]) -> str | None:
    """Why these contacts cannot be merged now (an export of a segment holding them runs), or None."""
    run = (
        ExportRun.objects.filter(
            status=RunStatus.RUNNING,
            activation__segment__in=Membership.objects.filter(contact_id__in=contact_ids).values("segment_id"),
        )
        .select_related("activation__segment")
        .order_by("pk")
        .first()
    )
    if run is None:
        return None
    return (
        f"Export run {run.pk} of '{run.activation.segment.name}' is running and reads these contacts; "
        "merge them once it has finished."
    )


def pass_snapshot_to_survivor(merge: ContactMerge, by: AbstractBaseUser | None) -> dict:
    """The loser's snapshot rows of activations that never exported the survivor become the
    survivor's; returns them ({"rows": [[id, removal row]]}) for undo."""
    survivors = ExportedMember.objects.filter(activation=OuterRef("activation"), contact_id=merge.survivor_id)
    rows = ExportedMember.objects.filter(contact_id=merge.loser_id).filter(~Exists(survivors))
    passed = [[pk, removal] for pk, removal in rows.order_by("pk").values_list("pk", "removal")]
    if passed:
        ExportedMember.objects.filter(pk__in=[pk for pk, _removal in passed]).update(contact_id=merge.survivor_id)
    return {"rows": passed}


def give_snapshot_back(merge: ContactMerge, record: dict, by: AbstractBaseUser | None) -> None:
    """Undo: the passed rows return to the loser, but for those a run has rewritten since."""
    passed = record.get("rows", [])
    if not passed:
        return
    kept = ExportedMember.objects.filter(pk__in=[pk for pk, _removal in passed], contact_id=merge.survivor_id)
    now = dict(kept.values_list("pk", "removal"))
    back = [pk for pk, removal in passed if pk in now and now[pk] == removal]
    ExportedMember.objects.filter(pk__in=back).update(contact_id=merge.loser_id)


MERGE_PARTICIPANT = MergeParticipant(
    "activation", apply=pass_snapshot_to_survivor, undo=give_snapshot_back, check=refuse_during_export
)
