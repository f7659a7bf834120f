"""Enrichment: filling stored contacts (matched by e-mail) and companies (matched by domain) with
values from a data vendor, a research team or a model, without losing what people captured.

Rows are checked and normalised as in the regular ingest (contacts/ingest.py); then, per value:
- a row whose key matches no stored record is refused: enrichment never creates one;
- an empty value (None, "", []) is no value: it never clears anything;
- a value equal to the stored one changes nothing (a second run of the same file is all unchanged);
- where the record holds a captured value (contacts/provenance.py), that value is kept and the
  cell reported as kept, unless `overwrite` is asked for;
- otherwise (the field is empty, or holds an enriched value) the value is written and marked
  enriched with the time, and what normalisation changed is kept in `original_values` as anywhere.

A job title derives job function and seniority only where the title itself is written. The stored
rows are locked and updated set-based: a fixed number of statements per batch whatever its size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from django.db import connection, models, transaction
from django.utils import timezone

from contacts import ingest, normalize, provenance
from contacts.copy_insert import copy_insert
from contacts.models import Company, Contact
from crmseg_site.model_fields import concrete_field

# What a vendor can know about a person or a company. A contact's lifecycle, value, consent,
# owner and company, and a company's target and competitor flags, are our own records: an
# enrichment file cannot name them.
CONTACT_FIELDS = [
    "first_name", "last_name", "phone", "job_title", "job_function", "seniority", "country", "region", "city",
    "postal_code", "street_address", "time_zone", "language", "birth_year", "gender", "income_band", "education",
    "marital_status", "interests", "values", "technologies",
]  # fmt: skip
COMPANY_FIELDS = ["name", "industry", "employee_count", "annual_revenue", "country", "region", "city", "technologies"]
DERIVED_FROM_TITLE = ("job_function", "seniority")


@dataclass
class EnrichResult(ingest.UpsertResult):
    """`updated` holds every matched row, `unchanged` those that changed nothing; `kept` the paths
    (field names, props.<key>) of each row that were not written because a captured value is stored."""

    kept: dict[int, list[str]] = field(default_factory=dict)


@dataclass
class _Kind:
    model: type[Contact] | type[Company]
    key: str
    fields: list[str]
    noun: str


CONTACTS = _Kind(Contact, "email", CONTACT_FIELDS, "contact")
COMPANIES = _Kind(Company, "domain", COMPANY_FIELDS, "company")


def enrich_contacts(rows: list, *, overwrite: bool = False, now: datetime | None = None) -> EnrichResult:
    """Fill stored contacts matched by e-mail; `properties` fills declared custom properties."""
    result = EnrichResult()
    good, originals = ingest.clean_contacts(rows, result.failed, result.suggestions)
    _refuse_other_fields(rows, good, CONTACTS, result)
    # A title derives function and seniority; those a row did not give follow the title.
    derived = {i: {n for n in DERIVED_FROM_TITLE if n in values and n not in rows[i]} for i, values in good.items()}
    _enrich(good, originals, derived, CONTACTS, result, overwrite=overwrite, now=now or timezone.now())
    return result


def enrich_companies(rows: list, *, overwrite: bool = False, now: datetime | None = None) -> EnrichResult:
    """Fill stored companies matched by domain (a website URL is read as its domain)."""
    result = EnrichResult()
    good, originals = ingest.clean_companies(rows, result.failed)
    _refuse_other_fields(rows, good, COMPANIES, result)
    _enrich(good, originals, {}, COMPANIES, result, overwrite=overwrite, now=now or timezone.now())
    if changed := [o.id for o in result.updated if o not in result.unchanged]:
        contacts = Contact.objects.filter(company_id__in=changed)
        result.changed_contact_ids = set(contacts.values_list("pk", flat=True))
    return result


def _refuse_other_fields(rows: list, good: dict[int, dict], kind: _Kind, result: EnrichResult) -> None:
    fills = ", ".join(kind.fields) + (" and declared properties" if kind.model is Contact else "")
    allowed = {kind.key, *kind.fields} | ({"properties"} if kind.model is Contact else set())
    for index in list(good):
        if others := sorted(set(rows[index]) - allowed):
            message = f"An enrichment does not fill a {kind.noun}'s {{}}; it fills {fills}."
            result.failed[index] = {name: [message.format(name)] for name in others}
            del good[index]


def _enrich(
    good: dict[int, dict],
    originals: dict[int, dict],
    derived: dict[int, set[str]],
    kind: _Kind,
    result: EnrichResult,
    *,
    overwrite: bool,
    now: datetime,
) -> None:
    if not good:
        return
    at = now.isoformat()
    with transaction.atomic():
        stored = _locked(kind, [values[kind.key] for values in good.values()])
        objs, written_fields = [], {"updated_at", "enriched_at", "original_values"}
        for index, values in good.items():
            row = stored.get(values[kind.key])
            if row is None:
                never = "an enrichment fills stored records and never creates one"
                result.failed[index] = {kind.key: [f"No {kind.noun} with {kind.key} {values[kind.key]!r}: {never}."]}
                continue
            outcome = ingest.RowOutcome(index=index, id=row["id"], key=values[kind.key])
            result.updated.append(outcome)
            changes, kept = _changes(values, row, kind.key, derived.get(index, set()), overwrite=overwrite)
            if kept:
                result.kept[index] = kept
            if not changes:
                result.unchanged.append(outcome)
                continue
            written = set(changes) - {"properties"}
            if "properties" in changes:
                written |= {f"{provenance.PROPERTY_PREFIX}{key}" for key in changes["properties"]}
                changes["properties"] = {**(row["properties"] or {}), **changes["properties"]}
            typed = {name: value for name, value in originals.get(index, {}).items() if name in changes}
            changes["original_values"] = normalize.merged_originals(row["original_values"], set(changes), typed)
            changes["enriched_at"] = {**(row["enriched_at"] or {}), **dict.fromkeys(sorted(written), at)}
            written_fields |= set(changes)
            objs.append((row, changes))
            if kind.model is Contact:
                result.changed_contact_ids.add(row["id"])
        _write(kind.model, objs, written_fields, now)


def _locked(kind: _Kind, keys: list) -> dict[object, dict]:
    """{key: stored row by column} of the matching records, locked until the batch commits (a
    captured edit meanwhile waits, and is not overwritten by what this batch read before it)."""
    columns = [f.attname for f in kind.model._meta.concrete_fields]
    rows = kind.model._default_manager.select_for_update().filter(**{f"{kind.key}__in": keys}).order_by("pk")
    return {row[kind.key]: row for row in rows.values(*columns)}


def _changes(values: dict, stored: dict, key: str, derived: set[str], *, overwrite: bool) -> tuple[dict, list[str]]:
    """({column: value} to write, [paths kept because a captured value is stored])."""
    marks = stored["enriched_at"] or {}
    changes: dict = {}
    kept: list[str] = []

    def decide(path: str, new: object, old: object) -> bool:
        if provenance.is_empty(new) or new == old:
            return False
        if not provenance.is_empty(old) and path not in marks and not overwrite:
            kept.append(path)
            return False
        return True

    for name, new in values.items():
        if name not in (key, "properties") and name not in derived and decide(name, new, stored[name]):
            changes[name] = new
    if "job_title" in changes:
        changes |= {name: values[name] for name in sorted(derived) if decide(name, values[name], stored[name])}
    old_properties = stored.get("properties") or {}
    for prop, new in (values.get("properties") or {}).items():
        if decide(f"{provenance.PROPERTY_PREFIX}{prop}", new, old_properties.get(prop)):
            changes.setdefault("properties", {})[prop] = new
    return changes, kept


def _write(model: type[models.Model], objs: list[tuple[dict, dict]], fields: set[str], now: datetime) -> None:
    """One UPDATE of every changed record: each row's own changes, the stored value in the columns
    another row changes. On PostgreSQL the rows are copied into a temporary table and joined (a
    bulk_update's CASE per column costs rows x rows); elsewhere Django's bulk_update."""
    if not objs:
        return
    columns = sorted(fields)
    rows = [
        (stored["id"], *(now if name == "updated_at" else changes.get(name, stored[name]) for name in columns))
        for stored, changes in objs
    ]
    if connection.vendor == "postgresql":
        names = [concrete_field(model, name).attname for name in columns]
        copy_insert(model, ["id", *names], rows, insert=partial(_update_from, model, names))
        return
    records = [model(pk=row[0], **dict(zip(columns, row[1:], strict=True))) for row in rows]
    model._default_manager.bulk_update(records, columns, batch_size=ingest.BATCH_SIZE)


def _update_from(model: type[models.Model], columns: list[str], source: str) -> str:
    """UPDATE of `model`'s rows from the rows of table `source` with the same ids (RETURNING id)."""
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(name)} = source.{quote(name)}" for name in columns)
    table = quote(model._meta.db_table)
    join = f"FROM {quote(source)} AS source WHERE {table}.id = source.id"
    return f"UPDATE {table} SET {assignments} {join} RETURNING {table}.id"
