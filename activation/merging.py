"""Activation's part in merging contacts (contacts/merging.py): no merge while an export reads them.

A running export reads its segment's members and writes what it sent; merging one of them away
meanwhile would leave the export's snapshot naming a contact that no longer exists (or, undone,
one that was gone when it ran). The merge is refused until the run ends.
"""

from __future__ import annotations

from activation.models import ExportRun, RunStatus
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
