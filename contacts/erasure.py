"""Erasing contacts: their personal data removed from everywhere crmseg keeps it (issue 24).

`erase_contacts(ids, by=user)` does it in one transaction:

- every app that keeps something about a contact outside the contact's own rows acts first, through
  an eraser it registered at start-up (`add_eraser`, as `contacts.changes` listeners are): activation
  drops the contacts from export reports and queues a run of every activation whose destination
  received them, which sends their removal rows (kept with the export snapshot, without the
  contact row) and then forgets them, and rewrites the export files kept on disk without their
  rows; every automation webhook that was sent the contacts is queued an erasure notice;
- deals keep their amount and stage without the contact, and lose a name that names the person;
- the admin's history (LogEntry) keeps who changed what and when, no longer the person's name or
  email, and gains one entry saying who erased the contact;
- the merges into the contact go, with the snapshot of the merged-away record each kept for undo
  (the same person's data): they can no longer be undone;
- the contact is deleted, and with it, by their foreign keys, its activities (and so the activity
  tallies), metrics, lifecycle history, segment memberships and their history (the explainer's
  answers included), automation runs, nurture enrolments and notifications;
- the deletes and renames go through `contacts.writes`, which tells segments the contacts changed,
  so their sizes follow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import CharField, F, Value
from django.db.models.functions import Concat

from contacts import writes
from contacts.models import Contact, ContactMerge, Deal


@dataclass
class Erasure:
    """What one erase_contacts call did: the contacts erased, the export runs queued for them and the
    webhook notices queued (automation webhooks that received them are told of the erasure)."""

    erased: list[int]
    queued_runs: list[int] = field(default_factory=list)
    webhook_notices: int = 0


Eraser = Callable[[list[int], Erasure], None]
_erasers: list[Eraser] = []


def add_eraser(eraser: Eraser) -> None:
    """Run `eraser(contact_ids, erasure)` inside every erasure's transaction, before the contacts go."""
    if eraser not in _erasers:
        _erasers.append(eraser)


def erase_contacts(contact_ids: Iterable[int], *, by=None) -> Erasure:
    """Erase these contacts (ids that do not exist are ignored); `by`, the user who asked, is logged."""
    ids = sorted({int(i) for i in contact_ids})
    with transaction.atomic():
        contacts = Contact.objects.filter(pk__in=ids).select_for_update().order_by("pk")
        found = list(contacts.values_list("pk", "first_name", "last_name", "email"))
        erasure = Erasure(erased=[pk for pk, *_ in found])
        if not found:
            return erasure
        for eraser in _erasers:
            eraser(erasure.erased, erasure)
        for pk, *identifying in found:
            _scrub_deal_names(pk, [value for value in identifying if len(value) > 1])
        _scrub_admin_history(erasure, by=by)
        ContactMerge.objects.filter(survivor_id__in=erasure.erased).delete()
        writes.delete(Contact.objects.filter(pk__in=erasure.erased))
    return erasure


def _scrub_deal_names(contact_id: int, identifying: list[str]) -> None:
    for deal in Deal.objects.filter(contact_id=contact_id).only("name"):
        if any(value.lower() in deal.name.lower() for value in identifying):
            writes.update(Deal.objects.filter(pk=deal.pk), name=f"Deal {deal.pk} (contact erased)")


def _scrub_admin_history(erasure: Erasure, *, by) -> None:
    content_type = ContentType.objects.get_for_model(Contact)
    object_ids = [str(pk) for pk in erasure.erased]
    LogEntry.objects.filter(content_type=content_type, object_id__in=object_ids).update(
        object_repr=Concat(Value("Contact "), F("object_id"), Value(" (erased)"), output_field=CharField())
    )
    if by is None:
        return
    runs = len(erasure.queued_runs)
    LogEntry.objects.bulk_create(
        LogEntry(
            user_id=by.pk,
            content_type=content_type,
            object_id=object_id,
            object_repr=f"Contact {object_id} (erased)",
            action_flag=DELETION,
            change_message=(
                f"Erased: personal data removed; {runs} export run(s) queued to send removals; "
                f"{erasure.webhook_notices} webhook notice(s) queued."
            ),
        )
        for object_id in object_ids
    )
