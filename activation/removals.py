"""Removal rows for snapshot rows that have none: those kept before removal rows were (issue 24).

An export now keeps, with each member of its snapshot, the removal row of what the destination
received (activation/exports.py). Snapshot rows written before that have none; a run makes their
removal rows from the contact while it exists, but a contact deleted first could not be removed.
`fill_removal_rows` makes them from the contacts as they are now: `manage.py keep_removal_rows`
runs it once for every file activation, and an erasure for the contacts it erases, before they go.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

from activation import normalize
from activation.formats import file_format
from activation.models import Activation, DestinationKind, ExportedMember
from contacts.models import Contact


def fill_removal_rows(activation: Activation, *, contact_ids: Iterable[int] | None = None) -> int:
    """Give the activation's snapshot rows without a removal row one, made from the contact now;
    returns how many. Webhook destinations need none (a leave event names the contact by id)."""
    destination = activation.destination
    if destination.kind == DestinationKind.WEBHOOK:
        return 0
    fmt = file_format(destination)
    missing = ExportedMember.objects.filter(activation=activation, removal__isnull=True)
    if contact_ids is not None:
        missing = missing.filter(contact_id__in=list(contact_ids))
    contacts = Contact.objects.filter(pk__in=missing.values("contact_id")).only("lifecycle_stage", *fmt.fields)
    if any("__" in name for name in fmt.fields):
        contacts = contacts.select_related("company")
    filled = 0
    chunk: dict[int, list[str]] = {}
    for contact in contacts.order_by("pk").iterator(chunk_size=settings.ACTIVATION_EXPORT_CHUNK_SIZE):
        try:
            chunk[contact.pk] = fmt.removal(fmt.row(contact, destination))
        except normalize.Unusable:
            continue  # the file could not have carried it either
        if len(chunk) >= settings.ACTIVATION_EXPORT_CHUNK_SIZE:
            filled += _store(activation, chunk)
            chunk = {}
    return filled + _store(activation, chunk)


def _store(activation: Activation, rows: dict[int, list[str]]) -> int:
    snapshot = ExportedMember.objects.filter(activation=activation, contact_id__in=rows, removal__isnull=True)
    with transaction.atomic():
        members = list(snapshot.only("pk", "contact_id"))
        for member in members:
            member.removal = rows[member.contact_id]
        ExportedMember.objects.bulk_update(members, ["removal"])
    return len(members)
