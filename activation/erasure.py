"""What an erasure (contacts.erasure.erase_contacts) does in activation.

- Export reports list skipped contacts by id, email and reason (which quotes the bad value): the
  erased contacts' entries are dropped (the runs' counts stay; they name no one).
- Every activation whose snapshot holds an erased contact (its destination has them) gets a run
  queued now (a snapshot row kept before removal rows were gets one from the contact first),
  executed after the erasure commits: the contact is no longer in the audience, so the run sends
  the removal row the snapshot kept (a removal file, or a webhook leave event) and then forgets the
  contact. Should that run fail or be refused, every later run of the activation sends the
  removal until one succeeds, as for any other member who left.
- The export files kept on disk of that activation's earlier runs (add and removal files) hold the
  contact's rows, and so may the files of an activation the contact left before: their removal
  rows are recorded and a task rewrites the files without them after the erasure commits
  (activation/file_scrub.py). The files of the run queued here, and of later runs, keep the
  removal row: they are what must reach the destination.
- Nothing else here keeps a contact's data: staged run members are emptied when a run ends,
  automation runs, enrolments and notifications go with the contact (foreign keys), and webhook
  payloads are not stored.
"""

from __future__ import annotations

from django.db.models import Max

from activation.exports import start_run
from activation.file_scrub import enqueue_scrub, queue_scrub
from activation.models import Activation, DestinationKind, ExportedMember, ExportRun
from activation.removals import fill_removal_rows
from activation.tasks import enqueue_export
from contacts.erasure import Erasure
from segments.models import MembershipChange


def erase_from_activation(contact_ids: list[int], erasure: Erasure) -> None:
    _drop_from_reports(set(contact_ids))
    received = ExportedMember.objects.filter(contact_id__in=contact_ids).values("activation_id")
    scrubs = 0
    for activation in Activation.objects.filter(pk__in=received).select_related("destination").order_by("pk"):
        fill_removal_rows(activation, contact_ids=contact_ids)  # snapshot rows from before they were kept
        run = start_run(activation)
        enqueue_export(run)
        erasure.queued_runs.append(run.pk)
        if activation.destination.kind != DestinationKind.WEBHOOK:
            scrubs += queue_scrub(activation, contact_ids, before_run=run.pk)
    # Activations of segments the contacts were in but left (their removal sent) keep files with their
    # rows too; the membership history says which segments (not every file crmseg keeps is read).
    were_in = MembershipChange.objects.filter(contact_id__in=contact_ids).values("segment_id")
    with_files = ExportRun.objects.exclude(file_path="", removed_file_path="").values("activation_id")
    others = Activation.objects.filter(pk__in=with_files, segment_id__in=were_in).exclude(pk__in=received)
    others = others.exclude(destination__kind=DestinationKind.WEBHOOK).select_related("destination")
    for activation in others.annotate(last_run=Max("runs__pk")).order_by("pk"):
        scrubs += queue_scrub(activation, contact_ids, before_run=activation.last_run + 1)
    if scrubs:
        enqueue_scrub()


def _drop_from_reports(contact_ids: set[int]) -> None:
    """One pass over the runs that reported skipped contacts (few: most runs skip no one)."""
    with_rows = ExportRun.objects.filter(skipped_count__gt=0).only("report")
    for run in with_rows.iterator():
        rows = run.report.get("skipped", [])
        kept = [row for row in rows if row.get("contact_id") not in contact_ids]
        if len(kept) != len(rows):
            ExportRun.objects.filter(pk=run.pk).update(report={**run.report, "skipped": kept})
