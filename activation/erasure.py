"""What an erasure (contacts.erasure.erase_contacts) does in activation.

- Export reports list skipped contacts by id, email and reason (which quotes the bad value): the
  erased contacts' entries are dropped (the runs' counts stay; they name no one).
- Every activation whose snapshot holds an erased contact (its destination has them) gets a run
  queued now (a snapshot row kept before removal rows were gets one from the contact first),
  executed after the erasure commits: the contact is no longer in the audience, so the run sends
  the removal row the snapshot kept (a removal file, or a webhook leave event) and then forgets the
  contact. Should that run fail or be refused, every later run of the activation sends the
  removal until one succeeds, as for any other member who left.
- Nothing else here keeps a contact's data: staged run members are emptied when a run ends,
  automation runs, enrolments and notifications go with the contact (foreign keys), and webhook
  payloads are not stored.
"""

from __future__ import annotations

from activation.exports import start_run
from activation.models import Activation, ExportedMember, ExportRun
from activation.removals import fill_removal_rows
from activation.tasks import enqueue_export
from contacts.erasure import Erasure


def erase_from_activation(contact_ids: list[int], erasure: Erasure) -> None:
    _drop_from_reports(set(contact_ids))
    received = ExportedMember.objects.filter(contact_id__in=contact_ids).values("activation_id")
    for activation in Activation.objects.filter(pk__in=received).select_related("destination").order_by("pk"):
        fill_removal_rows(activation, contact_ids=contact_ids)  # snapshot rows from before they were kept
        run = start_run(activation)
        enqueue_export(run)
        erasure.queued_runs.append(run.pk)


def _drop_from_reports(contact_ids: set[int]) -> None:
    """One pass over the runs that reported skipped contacts (few: most runs skip no one)."""
    with_rows = ExportRun.objects.filter(skipped_count__gt=0).only("report")
    for run in with_rows.iterator():
        rows = run.report.get("skipped", [])
        kept = [row for row in rows if row.get("contact_id") not in contact_ids]
        if len(kept) != len(rows):
            ExportRun.objects.filter(pk=run.pk).update(report={**run.report, "skipped": kept})
