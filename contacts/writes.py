"""The one write path for contact data: contacts, companies, activities and deals.

Everything that writes these four tables (the admin, the API, bulk ingest, file imports, merges,
the demo seeder, automations, erasure) calls a function here, never a model's save(), update(),
delete() or bulk_create() of its own. Each function writes inside one transaction and announces
the contacts whose data it changed with `contacts.changes.contacts_changed`, which records them in
that transaction for the catch-up task queued once it commits (their metrics and propensity scores
are recomputed, then segments re-read them). Callers never announce: nothing else calls
`contacts_changed`.

The contacts a write changes are the contact's own row; every contact of a company that is
written; the contact of an activity or a deal, both the one it had and the one it moves to.

    save(obj)                    one new or changed row, through its model's save() (a contact records
                                 its stage change and normalises its email; a company its domain)
    update(queryset, **values)   one UPDATE of many rows; values may be expressions (F("lead_score") + 5)
    bulk_update(objs, fields)    many rows, each with its own values (normalize_contacts)
    delete(target)               a row or a queryset, with what cascades from it
    restore(rows)                rows serialised by django.core.serializers ("python" form), saved back
                                 as they were, ids and all (undoing a merge)
    upsert_contacts(rows), upsert_companies(rows), ingest_activities(rows), upsert_deals(rows)
                                 bulk rows checked one by one, the good ones stored set-based, all or
                                 nothing (contacts/ingest.py: the result says which rows failed and why)
    enrich_contacts(rows), enrich_companies(rows)
                                 fill stored records, never creating one nor overwriting a captured
                                 value unless asked (contacts/enrichment.py)
    seed_demo(contacts=N)        a believable demo CRM (contacts/demo_data.py)

A captured write that changes an enriched value makes it captured (contacts/provenance.py).

A caller wanting several writes to commit together wraps them in `transaction.atomic()`; the
announcements then wait for that outer commit, and a rollback announces nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NoReturn, TypeVar

from django.core import serializers
from django.db import models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from contacts import demo_data, enrichment, ingest, provenance
from contacts.changes import contacts_changed
from contacts.models import Activity, Company, Contact, Deal

ContactData = Contact | Company | Activity | Deal
Row = TypeVar("Row", bound=ContactData)
WRITTEN_MODELS: tuple[type[models.Model], ...] = (Contact, Company, Activity, Deal)

# Columns whose meaning lives in the model's save(), which an UPDATE would skip.
SAVE_ONLY_FIELDS = {
    Contact: {"lifecycle_stage": "records the stage change", "email": "normalises the email"},
    Company: {"domain": "normalises the domain"},
}


def save(obj: Row, *, update_fields: Iterable[str] | None = None) -> Row:
    """Insert or update one row with its model's save(); returns it."""
    _check_model(type(obj))
    with transaction.atomic():
        ids = _stored_contact_ids(obj)
        marks = provenance.forget_overwritten(obj)
        obj.save(update_fields=None if update_fields is None else [*update_fields, *marks])
        ids |= _saved_contact_ids(obj)
        contacts_changed(ids)
    return obj


def update(queryset: QuerySet[Any], **values: Any) -> int:
    """UPDATE the rows of `queryset` set-based; returns how many. `updated_at` follows, where a model has one."""
    model = _check_model(queryset.model)
    for name, why in SAVE_ONLY_FIELDS.get(model, {}).items():
        if name in values:
            raise ValueError(f"{model.__name__}.{name} is written with contacts.writes.save(), which {why}.")
    if "updated_at" in {f.name for f in model._meta.concrete_fields}:
        values.setdefault("updated_at", timezone.now())
    with transaction.atomic():
        ids = _contact_ids(queryset)
        moved_to = values.get("contact", values.get("contact_id"))
        if moved_to is not None:
            ids.add(moved_to.pk if isinstance(moved_to, Contact) else int(moved_to))
        count = queryset.update(**values)
        contacts_changed(ids)
    return count


def bulk_update(objs: list[Row], fields: Iterable[str], *, batch_size: int = 2000) -> int:
    """UPDATE `fields` of these rows, each with its own values (Django's bulk_update); returns how many.

    For the normalize_contacts job, whose e-mails are already in normal form (contacts.normalize).
    A contact's stage is refused: its change is recorded by save().
    """
    fields = list(fields)
    if not objs:
        return 0
    model = _check_model(type(objs[0]))
    if model is Contact and "lifecycle_stage" in fields:
        raise ValueError("Contact.lifecycle_stage is written with contacts.writes.save(), which records its change.")
    with transaction.atomic():
        ids = _contact_ids(model._default_manager.filter(pk__in=[obj.pk for obj in objs]))
        count = model._default_manager.bulk_update(objs, fields, batch_size=batch_size)
        contacts_changed(ids)
    return count


def delete(target: ContactData | QuerySet[Any]) -> int:
    """Delete a row or the rows of a queryset, with what cascades; returns how many rows of its model went."""
    queryset = target if isinstance(target, QuerySet) else type(target)._default_manager.filter(pk=target.pk)
    model = _check_model(queryset.model)
    with transaction.atomic():
        ids = _contact_ids(queryset)
        _total, by_model = queryset.delete()
        contacts_changed(ids)
    return by_model.get(model._meta.label, 0)


def restore(rows: list[dict]) -> int:
    """Save serialised rows back exactly as they were (a raw save: no save() logic, ids kept); returns how many."""
    with transaction.atomic():
        ids: set[int] = set()
        restored = list(serializers.deserialize("python", rows))
        for item in restored:
            row = item.object
            if not isinstance(row, ContactData):
                _refuse(type(row))
            ids |= _stored_contact_ids(row) | _saved_contact_ids_unsaved(row)
            item.save()
        contacts_changed(ids)
    return len(restored)


def upsert_contacts(rows: list, *, now: datetime | None = None) -> ingest.UpsertResult:
    """Create or update contacts matched by normalised email (see contacts/ingest.py)."""
    with transaction.atomic():
        result = ingest.upsert_contacts(rows, now=now)
        contacts_changed(result.changed_contact_ids)
    return result


def upsert_companies(rows: list) -> ingest.UpsertResult:
    """Create or update companies matched by normalised domain; the contacts of updated ones change."""
    with transaction.atomic():
        result = ingest.upsert_companies(rows)
        contacts_changed(result.changed_contact_ids)
    return result


def upsert_deals(rows: list) -> ingest.UpsertResult:
    """Create or update deals matched by external_id; their contacts (before and after) change."""
    with transaction.atomic():
        result = ingest.upsert_deals(rows)
        contacts_changed(result.changed_contact_ids)
    return result


def enrich_contacts(rows: list, *, overwrite: bool = False) -> enrichment.EnrichResult:
    """Fill stored contacts matched by normalised e-mail (see contacts/enrichment.py)."""
    with transaction.atomic():
        result = enrichment.enrich_contacts(rows, overwrite=overwrite)
        contacts_changed(result.changed_contact_ids)
    return result


def enrich_companies(rows: list, *, overwrite: bool = False) -> enrichment.EnrichResult:
    """Fill stored companies matched by domain; the contacts of changed ones change."""
    with transaction.atomic():
        result = enrichment.enrich_companies(rows, overwrite=overwrite)
        contacts_changed(result.changed_contact_ids)
    return result


def ingest_activities(rows: list) -> ingest.ActivityIngestResult:
    """Store activities; a repeated external_id is counted as a duplicate, not stored twice."""
    with transaction.atomic():
        result = ingest.ingest_activities(rows)
        contacts_changed(result.changed_contact_ids)
    return result


def seed_demo(*, contacts: int, seed: int | None = None, now: datetime | None = None) -> demo_data.Seeded:
    """Write a demo CRM of `contacts` contacts with companies, activities and deals."""
    with transaction.atomic():
        seeded = demo_data.seed_demo(contacts=contacts, seed=seed, now=now)
        contacts_changed(seeded.contact_ids)
    return seeded


def _check_model(model: type[models.Model]) -> type[models.Model]:
    if model not in WRITTEN_MODELS:
        _refuse(model)
    return model


def _refuse(model: type[models.Model]) -> NoReturn:
    raise TypeError(f"contacts.writes writes contacts, companies, activities and deals, not {model.__name__}.")


def _contact_ids(queryset: QuerySet[Any]) -> set[int]:
    """The contacts whose data the rows of `queryset` are part of."""
    if queryset.model is Contact:
        return set(queryset.values_list("pk", flat=True))
    if queryset.model is Company:
        return set(Contact.objects.filter(company__in=queryset.values("pk")).values_list("pk", flat=True))
    return set(queryset.exclude(contact=None).values_list("contact_id", flat=True).distinct())


def _saved_contact_ids(obj: ContactData) -> set[int]:
    if isinstance(obj, Contact):
        return {obj.pk}
    if isinstance(obj, Company):
        return _contact_ids(Company.objects.filter(pk=obj.pk))
    return set() if obj.contact_id is None else {obj.contact_id}


def _saved_contact_ids_unsaved(obj: ContactData) -> set[int]:
    """The contact a row names before it is saved (restore: the row may not exist yet)."""
    if isinstance(obj, Contact):
        return {obj.pk}
    if isinstance(obj, Company):
        return set(Contact.objects.filter(company_id=obj.pk).values_list("pk", flat=True))
    return set() if obj.contact_id is None else {obj.contact_id}


def _stored_contact_ids(obj: ContactData) -> set[int]:
    """The contact a stored activity or deal belongs to before it is saved (a save can move it)."""
    if obj.pk is None or not isinstance(obj, Activity | Deal):
        return set()
    return _contact_ids(type(obj)._default_manager.filter(pk=obj.pk))
