"""Bulk ingest for integrations: contacts by email, companies by domain, activities and deals by external_id.

Each row is validated on its own; the good rows are written set-based (one INSERT ... ON CONFLICT
per batch, no save() per row) inside one transaction, so a request is stored whole or not at all.
Callers get back which rows were created, updated, duplicated or refused, with per-field errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache, partial

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, URLValidator
from django.db import connection, models, transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.db.models.expressions import RawSQL
from django.utils import timezone

from contacts import normalize, provenance
from contacts.copy_insert import copy_insert
from contacts.models import (
    Activity,
    ActivityKind,
    ActivityTally,
    Company,
    CompanyAlias,
    Contact,
    ContactAlias,
    Deal,
    DealStage,
    JobTitleRule,
    LifecycleChange,
    LifecycleStage,
    PropertyDefinition,
    normalize_email,
    year_problem,
)
from contacts.partitions import claim_insert_sql
from contacts.table_statistics import analyze_if_stale
from crmseg_site.model_fields import concrete_field
from crmseg_site.untrusted_json import nul_paths

MAX_ROWS = 10_000
BATCH_SIZE = 2_000
DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$")

RowErrors = dict[str, list[str]]
NUL_MESSAGE = "Text may not contain NUL characters."

# Fields a row may set directly; everything else about a contact is derived or managed here.
CONTACT_BOOKKEEPING = {"id", "email", "company", "owner", "lifecycle_changed_at", "created_at", "updated_at"}
CONTACT_FIELDS = [
    f.name
    for f in Contact._meta.concrete_fields
    if f.name not in CONTACT_BOOKKEEPING | {"original_values", "enriched_at"}
]
COMPANY_FIELDS = [
    f.name
    for f in Company._meta.concrete_fields
    if f.name not in {"id", "domain", "created_at", "updated_at", "original_values", "enriched_at"}
]
ACTIVITY_TEXT_LIMITS = {"topic": 100, "product": 100, "campaign": 100, "external_id": 200}
ACTIVITY_FIELDS = {"contact", "email", "kind", "occurred_at", "url", "value", *ACTIVITY_TEXT_LIMITS}
ACTIVITY_KINDS = frozenset(ActivityKind.values)
_url_validator = URLValidator()


@dataclass
class RowOutcome:
    index: int
    id: int
    key: str


@dataclass
class UpsertResult:
    created: list[RowOutcome] = field(default_factory=list)
    # Rows matching a stored record; those that would change nothing in it are in `unchanged` too
    # and were not written (nor announced as changed).
    updated: list[RowOutcome] = field(default_factory=list)
    unchanged: list[RowOutcome] = field(default_factory=list)
    failed: dict[int, RowErrors] = field(default_factory=dict)
    changed_contact_ids: set[int] = field(default_factory=set)
    # Accepted rows with a value that may be a typo ({row index: {field: "Did you mean ...?"}}).
    suggestions: dict[int, dict[str, str]] = field(default_factory=dict)


@dataclass
class ActivityIngestResult:
    created: int = 0
    duplicates: int = 0
    failed: dict[int, RowErrors] = field(default_factory=dict)
    changed_contact_ids: set[int] = field(default_factory=set)


def validate_domain(value: object) -> str:
    """Normalise a company domain (`https://www.Acme.com/x` -> `acme.com`) or raise ValidationError."""
    if not isinstance(value, str):
        raise ValidationError(f"Expected a domain name as text, got {type(value).__name__}.")
    domain = normalize.domain(value)
    if not DOMAIN.match(domain):
        raise ValidationError(f"{value!r} is not a domain name (e.g. acme.com).")
    return domain


def lookup_pairs(model: type[models.Model], key: str, value: str, wanted: Iterable) -> list[tuple]:
    """(key, value) of the rows whose `key` column is one of `wanted`."""
    wanted = list(wanted)
    if not wanted:
        return []
    return list(model._default_manager.filter(key_in(model, key, wanted)).values_list(key, value))


def aliased(model: type[Contact | Company], wanted: Iterable[str]) -> dict[str, tuple[int, str]]:
    """{alias: (id, own key)} of the contacts (by e-mail) or companies (by domain) that answer to one
    of `wanted` since a merge (ContactAlias, CompanyAlias); a key a record holds as its own is that
    record's, never an alias. One query, whatever the number of keys."""
    alias_model, key, owner = (
        (ContactAlias, "email", "contact") if model is Contact else (CompanyAlias, "domain", "company")
    )
    wanted = list(wanted)
    if not wanted:
        return {}
    own_key = model._default_manager.filter(pk=OuterRef(f"{owner}_id")).values(key)
    holder = model._default_manager.filter(**{key: OuterRef(key)})
    rows = (
        alias_model._default_manager.filter(key_in(alias_model, key, wanted))
        .filter(~Exists(holder))
        .annotate(own=Subquery(own_key))
        .values_list(key, f"{owner}_id", "own")
    )
    return {alias: (pk, own) for alias, pk, own in rows}


def ids_by_key(model: type[Contact | Company], key: str, wanted: Iterable[str]) -> dict[str, int]:
    """{key: id} of the records whose own key or alias is one of `wanted` (aliases are looked up, in one
    more query, only for keys no record holds)."""
    wanted = set(wanted)
    ids = dict(lookup_pairs(model, key, "id", wanted))
    return ids | {alias: pk for alias, (pk, _own) in aliased(model, wanted - ids.keys()).items()}


def key_in(model: type[models.Model], key: str, wanted: list) -> Q | RawSQL:
    """A filter: the `key` column is one of `wanted`.

    On PostgreSQL one array parameter (`= ANY(%s)`) instead of thousands of placeholders, which
    Django and the driver would otherwise build, scan and quote one by one; elsewhere the ORM's IN.
    """
    if connection.vendor != "postgresql":
        return Q(**{f"{key}__in": wanted})
    model_field = concrete_field(model, key)
    # Cast to the column's type so the comparison can use the column's index.
    array_type = "bigint[]" if isinstance(model_field, models.IntegerField) else "text[]"
    column = connection.ops.quote_name(model_field.get_attname_column()[1] or key)
    return RawSQL(f"{column} = ANY(%s::{array_type})", [wanted], output_field=models.BooleanField())


def _clean_field(model: type[models.Model], name: str, raw: object) -> object:
    """Validate one value with the model field's own rules (type, choices, length, validators)."""
    if type(raw) is str and raw and (plain := _plain_text_fields(model).get(name)):
        # What field.clean() would check of a text field, read from the field itself; a value
        # failing it goes through clean() below for the message. (A fifth of an import's time.)
        limit, allowed = plain
        if len(raw) <= limit and (allowed is None or raw in allowed):
            return raw
    if type(raw) is str and name in _converted_fields(model):
        return _clean_text(model, name, raw)
    return _clean_value(model, name, raw)


@cache
def _converted_fields(model: type[models.Model]) -> frozenset[str]:
    """The fields whose text becomes a number, date or boolean: a file repeats few such values."""
    kinds = (models.IntegerField, models.DecimalField, models.FloatField, models.DateField, models.BooleanField)
    return frozenset(f.name for f in model._meta.concrete_fields if isinstance(f, kinds))


@lru_cache(maxsize=normalize.LOOKUP_CACHE_SIZE)
def _clean_text(model: type[models.Model], name: str, raw: str) -> object:
    """`_clean_value` of a text, remembered: a field's rules depend on the value alone, and the
    result (a number, date or boolean) is immutable."""
    return _clean_value(model, name, raw)


def _clean_value(model: type[models.Model], name: str, raw: object) -> object:
    model_field = concrete_field(model, name)
    if name == "country" and isinstance(raw, str):
        raw = raw.upper()
    if isinstance(raw, dict | list) and not isinstance(model_field, models.JSONField):
        raise ValidationError(f"Expected a single value, got {type(raw).__name__}.")
    if isinstance(model_field, models.DateField | models.DateTimeField) and not isinstance(raw, str | None):
        raise ValidationError("Expected a date as text (YYYY-MM-DD).")
    return model_field.clean(raw, None)


@cache
def _plain_text_fields(model: type[models.Model]) -> dict[str, tuple[int, frozenset[str] | None]]:
    """{name: (max_length, allowed values or None)} of the text fields whose only rules are their
    length and choices: for them field.clean() of a non-empty text is just those two checks."""
    plain: dict[str, tuple[int, frozenset[str] | None]] = {}
    for model_field in model._meta.concrete_fields:
        if (
            type(model_field) is models.CharField
            and model_field.max_length is not None
            and all(isinstance(validator, MaxLengthValidator) for validator in model_field.validators)
        ):
            allowed = frozenset(str(value) for value, _ in model_field.flatchoices) if model_field.choices else None
            plain[model_field.name] = (model_field.max_length, allowed)
    return plain


def _clean_fields(row: dict, allowed: Iterable[str], model: type[models.Model], errors: RowErrors) -> dict:
    values = {}
    for name in allowed:
        if name in row:
            try:
                values[name] = _clean_field(model, name, row[name])
            except ValidationError as error:
                errors[name] = error.messages
    return values


def _validated_rows(
    rows: list,
    clean: Callable[[int, dict, RowErrors], dict],
    failed: dict[int, RowErrors],
    *,
    key: str = "",
    noun: str = "",
    aliases_of: type[Contact | Company] | None = None,
) -> dict[int, dict]:
    """{row index: cleaned values} of the rows `clean(index, row, errors)` accepts; the others go to `failed`.

    With `key`, a row repeating an earlier row's key is refused, naming the earlier row. With
    `aliases_of`, a key that is an alias of that model's record (`aliased`) becomes the record's own
    key first: the row is that record's, and repeats a row giving the record's own key.
    """
    cleaned: dict[int, dict] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            failed[index] = {"": [f"Expected an object, got {type(row).__name__}."]}
            continue
        # A NUL character cannot be stored in any text or JSON column; name where it is and check no further.
        errors: RowErrors = {path: [NUL_MESSAGE] for path in nul_paths(row) if path}
        values = {} if errors else clean(index, row, errors)
        if errors:
            failed[index] = errors
        else:
            cleaned[index] = values
    if not key:
        return cleaned
    aliases = aliased(aliases_of, {v[key] for v in cleaned.values()}) if aliases_of else {}
    good: dict[int, dict] = {}
    first_row_for_key: dict[object, int] = {}
    for index, values in cleaned.items():
        typed = values[key]
        if typed in aliases:
            values[key] = aliases[typed][1]
        if values[key] in first_row_for_key:
            since = f" ({typed} has been an alias of {values[key]} since a merge)" if typed in aliases else ""
            failed[index] = {key: [f"Same {key} as rows[{first_row_for_key[values[key]]}]{since}; send a {noun} once."]}
        else:
            first_row_for_key[values[key]] = index
            good[index] = values
    return good


def _unknown_keys(row: dict, allowed: set[str], errors: RowErrors) -> None:
    for name in row:
        if name not in allowed:
            errors[name] = [f"Unknown field {name!r}."]


def _check_properties(value: object, definitions: dict[str, PropertyDefinition], errors: RowErrors) -> None:
    if not isinstance(value, dict):
        errors["properties"] = ["Custom properties must be an object of key: value."]
        return
    messages = []
    for key, item in value.items():
        definition = definitions.get(key)
        if definition is None:
            messages.append(f"props.{key}: no PropertyDefinition declares {key!r}; declare it before writing it.")
        elif message := definition.check_value(item):
            messages.append(f"props.{key}: {message}")
    if messages:
        errors["properties"] = messages


def ensure_companies(names_by_domain: dict[str, str]) -> dict[str, int]:
    """Return {domain: company id}, creating a company (named as given, else by domain) for unknown ones
    (a domain a company answers to since a merge is that company's)."""
    if not names_by_domain:
        return {}
    ids = ids_by_key(Company, "domain", names_by_domain)
    missing = [Company(domain=domain, name=name or domain) for domain, name in names_by_domain.items()
               if domain not in ids]  # fmt: skip
    if missing:
        # ignore_conflicts: a company created meanwhile by another write is kept as it is.
        Company.objects.bulk_create(missing, ignore_conflicts=True, batch_size=BATCH_SIZE)
        ids |= dict(lookup_pairs(Company, "domain", "id", [company.domain for company in missing]))
    return ids


def stored_rows(model: type[models.Model], key: str, wanted: Iterable) -> dict[object, dict]:
    """{key: the stored row by column (attname)} of the rows whose `key` is one of `wanted`."""
    columns = [f.attname for f in model._meta.concrete_fields]
    rows = model._default_manager.filter(key_in(model, key, list(wanted))).values(*columns)
    return {row[key]: row for row in rows}


def same_as_stored(row: dict, fields: Iterable[str], stored: dict | None) -> bool:
    """Whether writing `fields` of `row` (by column) would leave the stored row as it is."""
    return stored is not None and all(row[name] == stored[name] for name in fields if name != "updated_at")


def _bulk_upsert(model: type[models.Model], entries: list[tuple[dict, set[str]]], *, key: str, now: datetime) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE the given columns, one statement per set of provided columns.

    `entries` are (values by column name, columns the row sets); unset columns get the model default
    on insert and keep their stored value on update. `updated_at` is always written.
    """
    defaults = {f.attname: f.get_default() for f in model._meta.concrete_fields if not f.primary_key}
    defaults["updated_at"] = now
    columns = list(defaults)
    groups: dict[frozenset[str], list[dict]] = {}
    for values, fields in entries:
        groups.setdefault(frozenset(fields | {"updated_at"}), []).append(values)
    for written, group in groups.items():
        update = sorted(written)
        if connection.vendor == "postgresql":
            # The columns no row of the group gives hold their default in every row: sent once.
            given_anywhere = written.union(*group)
            given = [c for c in columns if c in given_anywhere]
            constants = {c: defaults[c] for c in columns if c not in given}
            rows = (tuple(values.get(c, defaults[c]) for c in given) for values in group)
            copy_insert(model, given, rows, conflict=key, update=update, constants=constants)
        else:
            objs = [model(**(defaults | values)) for values in group]
            model._default_manager.bulk_create(
                objs, update_conflicts=True, unique_fields=[key], update_fields=update, batch_size=BATCH_SIZE
            )


def _insert(model: type[models.Model], rows: list[dict], *, columns: list[str]) -> None:
    if connection.vendor == "postgresql":
        copy_insert(model, columns, (tuple(row[c] for c in columns) for row in rows))
    else:
        model._default_manager.bulk_create([model(**row) for row in rows], batch_size=BATCH_SIZE)


def upsert_contacts(rows: list, *, now: datetime | None = None) -> UpsertResult:
    """Create or update contacts matched by normalised email; see the module docstring."""
    now = now or timezone.now()
    result = UpsertResult()
    good, originals = clean_contacts(rows, result.failed, result.suggestions)
    _check_owners(good, result)
    if not good:
        return result

    with transaction.atomic():
        company_names = {
            v["company_domain"]: str(rows[i].get("company_name") or "")[:200]
            for i, v in good.items()
            if v.get("company_domain")
        }
        company_ids = ensure_companies(company_names)
        existing = stored_rows(Contact, "email", [v["email"] for v in good.values()])
        objs, stage_changes, same = [], [], set()
        for index, values in good.items():
            stored = existing.get(values["email"])
            row, fields, change = _contact_from_row(
                values, stored, company_ids, originals=originals.get(index, {}), now=now
            )
            if same_as_stored(row, fields, stored):
                same.add(index)
                continue
            objs.append((row, fields))
            if change:
                stage_changes.append((values["email"], *change))
        _bulk_upsert(Contact, objs, key="email", now=now)
        ids = {email: stored["id"] for email, stored in existing.items()}
        new = [row["email"] for row, _fields in objs if row["email"] not in ids]
        ids |= dict(lookup_pairs(Contact, "email", "id", new))
        _insert(
            LifecycleChange,
            [
                {"contact_id": ids[email], "from_stage": old, "to_stage": new, "changed_at": now}
                for email, old, new in stage_changes
            ],
            columns=["contact_id", "from_stage", "to_stage", "changed_at"],
        )
    for index, values in good.items():
        email = values["email"]
        outcome = RowOutcome(index=index, id=ids[email], key=email)
        (result.updated if email in existing else result.created).append(outcome)
        if index in same:
            result.unchanged.append(outcome)
        else:
            result.changed_contact_ids.add(ids[email])
    _analyze_after_commit(Contact, written=len(objs))
    return result


CONTACT_KEYS = {"email", "company_domain", "company_name", "owner", *CONTACT_FIELDS}


def clean_contacts(
    rows: list, failed: dict[int, RowErrors], suggestions: dict[int, dict[str, str]]
) -> tuple[dict[int, dict], dict[int, dict]]:
    """Check and normalise contact rows: ({row index: cleaned values}, {row index: what normalisation
    changed}) of the good rows; the others (a repeated e-mail too) go to `failed` with their errors."""
    definitions = {d.key: d for d in PropertyDefinition.objects.all()}
    titles = JobTitleRule.objects.title_map()
    countries = _stored_countries(rows)
    originals: dict[int, dict] = {}

    def clean(index: int, row: dict, errors: RowErrors) -> dict:
        values, originals[index], found = _clean_contact(row, errors, definitions, titles, countries)
        if found:
            suggestions[index] = found
        return values

    return _validated_rows(rows, clean, failed, key="email", noun="contact", aliases_of=Contact), originals


def _stored_countries(rows: list) -> dict[str, str]:
    """{email: stored country} of the contacts whose row gives a phone but no country (by own address
    or alias): the phone's default region is the contact's country."""
    emails = {
        normalize_email(row["email"])
        for row in rows
        if isinstance(row, dict) and row.get("phone") and not row.get("country") and isinstance(row.get("email"), str)
    }
    countries = dict(lookup_pairs(Contact, "email", "country", emails))
    # Addresses no contact holds may be aliases: one query, and one more for the countries of any found.
    if aliases := aliased(Contact, emails - countries.keys()):
        by_id = dict(lookup_pairs(Contact, "id", "country", [pk for pk, _own in aliases.values()]))
        countries |= {alias: by_id.get(pk, "") for alias, (pk, _own) in aliases.items()}
    return {email: country for email, country in countries.items() if country}


def _clean_contact(
    row: dict,
    errors: RowErrors,
    definitions: dict[str, PropertyDefinition],
    titles: normalize.TitleMap,
    countries: dict[str, str],
) -> tuple[dict, dict, dict[str, str]]:
    """(cleaned values, originals of the values normalisation changed, suggestions)."""
    _unknown_keys(row, CONTACT_KEYS, errors)
    raw_email = row.get("email")
    stored_country = countries.get(normalize_email(raw_email), "") if isinstance(raw_email, str) else ""
    normalized = normalize.normalize_contact(row, titles=titles, stored_country=stored_country)
    errors.update(normalized.errors)
    row = normalized.values
    values = _clean_fields(row, [f for f in CONTACT_FIELDS if f not in normalized.errors], Contact, errors)
    try:
        if not isinstance(raw_email, str) or not raw_email.strip():
            raise ValidationError("Required: each row is matched by its email.")
        if "email" not in normalized.errors:
            values["email"] = row["email"]  # normalize.email checked it with the field's validator and length
    except ValidationError as error:
        errors["email"] = error.messages
    if "properties" in values:
        _check_properties(values["properties"], definitions, errors)
    if row.get("company_domain") not in (None, ""):
        try:
            values["company_domain"] = validate_domain(row["company_domain"])
        except ValidationError as error:
            errors["company_domain"] = error.messages
        if not isinstance(row.get("company_name", ""), str):
            errors["company_name"] = ["Expected text."]
    elif "company_domain" in row:
        values["company_domain"] = None
    if "owner" in row:
        if row["owner"] is not None and (isinstance(row["owner"], bool) or not isinstance(row["owner"], int)):
            errors["owner"] = ["Expected a user id (integer) or null."]
        values["owner"] = row["owner"]
    return values, normalized.originals, normalized.suggestions


def _check_owners(good: dict[int, dict], result: UpsertResult) -> None:
    wanted = {v["owner"] for v in good.values() if v.get("owner") is not None}
    known = set(get_user_model().objects.filter(pk__in=wanted).values_list("pk", flat=True)) if wanted else set()
    for index in [i for i, v in good.items() if v.get("owner") is not None and v["owner"] not in known]:
        result.failed[index] = {"owner": [f"No user with id {good[index]['owner']}."]}
        del good[index]


def _contact_from_row(
    values: dict, stored: dict | None, company_ids: dict[str, int], *, originals: dict, now: datetime
) -> tuple[dict, set[str], tuple[str | None, str] | None]:
    """Build the row to write (by column), the columns it sets, and (old stage, new stage) if it moves."""
    values = dict(values)
    domain = values.pop("company_domain", "missing")
    fields = set(values) - {"email", "owner"}
    values["original_values"] = normalize.merged_originals(stored and stored["original_values"], set(values), originals)
    fields.add("original_values")
    if domain != "missing":
        values["company_id"] = company_ids.get(domain) if domain else None
        fields.add("company_id")
    if "owner" in values:
        values["owner_id"] = values.pop("owner")
        fields.add("owner_id")
    stage = values.get("lifecycle_stage", LifecycleStage.LEAD)
    change = None
    if stored is None:
        values.setdefault("lifecycle_changed_at", now)
        change = (None, stage)
    else:
        old_stage = stored["lifecycle_stage"]
        values["lifecycle_changed_at"] = stored["lifecycle_changed_at"]
        values.setdefault("customer_since", stored["customer_since"])
        if "properties" in values:
            values["properties"] = {**(stored["properties"] or {}), **values["properties"]}
        values["enriched_at"] = provenance.marks_after_capture(
            stored["enriched_at"], provenance.changed_paths(stored, values)
        )
        fields.add("enriched_at")
        if "lifecycle_stage" in values and stage != old_stage:
            values["lifecycle_changed_at"] = now
            change = (old_stage, stage)
        fields |= {"lifecycle_changed_at", "customer_since"} if "lifecycle_stage" in values else set()
    if change and stage == LifecycleStage.CUSTOMER and values.get("customer_since") is None:
        values["customer_since"] = timezone.localdate(now)
        fields.add("customer_since")
    return values, fields, change


def upsert_companies(rows: list) -> UpsertResult:
    """Create or update companies matched by normalised domain."""
    result = UpsertResult()
    good, originals = clean_companies(rows, result.failed)
    if not good:
        return result
    with transaction.atomic():
        existing = stored_rows(Company, "domain", [values["domain"] for values in good.values()])
        objs, same = [], set()
        for index, values in good.items():
            stored = existing.get(values["domain"])
            typed = normalize.merged_originals(stored and stored["original_values"], set(values), originals[index])
            # A new company without a name is named after its domain; a stored one keeps its name.
            row = {"name": values["domain"]} | values | {"original_values": typed}
            fields = set(values) - {"domain"} | {"original_values"}
            if stored is not None:
                changed = provenance.changed_paths(stored, values)
                row["enriched_at"] = provenance.marks_after_capture(stored["enriched_at"], changed)
                fields.add("enriched_at")
            if same_as_stored(row, fields, stored):
                same.add(index)
            else:
                objs.append((row, fields))
        _bulk_upsert(Company, objs, key="domain", now=timezone.now())
        ids = {domain: stored["id"] for domain, stored in existing.items()}
        new = [row["domain"] for row, _fields in objs if row["domain"] not in ids]
        ids |= dict(lookup_pairs(Company, "domain", "id", new))
        updated_ids = [ids[row["domain"]] for row, _fields in objs if row["domain"] in existing]
        if updated_ids:
            contacts = Contact.objects.filter(company_id__in=updated_ids)
            result.changed_contact_ids = set(contacts.values_list("id", flat=True))
    for index, values in good.items():
        outcome = RowOutcome(index=index, id=ids[values["domain"]], key=values["domain"])
        (result.updated if values["domain"] in existing else result.created).append(outcome)
        if index in same:
            result.unchanged.append(outcome)
    _analyze_after_commit(Company, written=len(objs))
    return result


COMPANY_KEYS = {"domain", *COMPANY_FIELDS}


def clean_companies(rows: list, failed: dict[int, RowErrors]) -> tuple[dict[int, dict], dict[int, dict]]:
    """Check and normalise company rows: ({row index: cleaned values}, {row index: what normalisation
    changed}) of the good rows; the others (a repeated domain too) go to `failed` with their errors."""
    originals: dict[int, dict] = {}

    def clean(index: int, row: dict, errors: RowErrors) -> dict:
        values, originals[index] = _clean_company(row, errors)
        return values

    return _validated_rows(rows, clean, failed, key="domain", noun="company", aliases_of=Company), originals


def _clean_company(row: dict, errors: RowErrors) -> tuple[dict, dict]:
    """(cleaned values, originals of the values normalisation changed)."""
    _unknown_keys(row, COMPANY_KEYS, errors)
    normalized = normalize.normalize_company({k: v for k, v in row.items() if k != "domain"})
    errors.update(normalized.errors)
    fields = [f for f in COMPANY_FIELDS if f not in normalized.errors]
    values = _clean_fields(normalized.values, fields, Company, errors)
    try:
        values["domain"] = validate_domain(row.get("domain"))
    except ValidationError as error:
        errors["domain"] = error.messages
    else:
        if values["domain"] != row["domain"]:
            normalized.originals["domain"] = row["domain"]
    return values, normalized.originals


def _clean_activity(row: dict, errors: RowErrors) -> dict:
    """Fast per-row checks (this path must sustain 10,000 rows a second)."""
    values: dict = {}
    for name in row:
        if name not in ACTIVITY_FIELDS:
            errors[name] = [f"Unknown field {name!r}."]
    kind = row.get("kind")
    if not isinstance(kind, str) or kind not in ACTIVITY_KINDS:
        errors["kind"] = [f"{kind!r} is not an activity kind; allowed: {', '.join(ActivityKind.values)}."]
    values["kind"] = kind
    occurred = row.get("occurred_at")
    try:
        if not isinstance(occurred, str):
            raise TypeError(occurred)
        parsed = datetime.fromisoformat(occurred)
        # To UTC here: PostgreSQL refuses offsets beyond ±15:59 that Python accepts.
        aware = timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed
        values["occurred_at"] = aware.astimezone(UTC)
    except (TypeError, ValueError, OverflowError):
        errors["occurred_at"] = [f"{occurred!r} is not an ISO-8601 date-time (e.g. 2026-05-01T12:00:00Z)."]
    else:
        if problem := year_problem(parsed):
            errors["occurred_at"] = [problem]
    for name, limit in ACTIVITY_TEXT_LIMITS.items():
        value = row.get(name)
        if value is None:
            values[name] = None if name == "external_id" else ""
        elif not isinstance(value, str):
            errors[name] = ["Expected text."]
        elif len(value) > limit:
            errors[name] = [f"At most {limit} characters (got {len(value)})."]
        else:
            values[name] = value or (None if name == "external_id" else "")
    url = row.get("url") or ""
    values["url"] = ""
    if url:
        try:
            if not isinstance(url, str) or len(url) > 500:
                raise ValidationError("too long")
            _url_validator(url)
            values["url"] = url
        except ValidationError:
            errors["url"] = ["Expected an http(s) URL of at most 500 characters."]
    value = row.get("value")
    if value is not None:
        try:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise InvalidOperation
            number = Decimal(str(value))
            if not number.is_finite() or abs(number) >= Decimal("1e12"):
                raise InvalidOperation
            values["value"] = number.quantize(Decimal("0.01"))
        except InvalidOperation:
            errors["value"] = ["Expected a number below 1,000,000,000,000 with at most 2 decimals."]
    contact, email = row.get("contact"), row.get("email")
    if contact is not None and (isinstance(contact, bool) or not isinstance(contact, int)):
        errors["contact"] = ["Expected a contact id (integer)."]
    elif contact is None and not (isinstance(email, str) and email.strip()):
        errors["contact"] = ["Give the contact's id (contact) or email (email)."]
    if email is not None and not isinstance(email, str):
        errors["email"] = ["Expected an email address (text)."]
    return values


def _resolve_contacts(rows: list, good: dict[int, dict], result: ActivityIngestResult) -> None:
    ids = {r["contact"] for i, r in ((i, rows[i]) for i in good) if r.get("contact") is not None}
    emails = {normalize_email(rows[i]["email"]) for i in good if rows[i].get("contact") is None}
    email_by_id = dict(lookup_pairs(Contact, "id", "email", ids))
    by_email = ids_by_key(Contact, "email", emails)
    # A row naming a contact by id and by an address it answers to since a merge agrees with itself.
    other_addresses = {
        normalize_email(row["email"])
        for row in (rows[i] for i in good)
        if row.get("contact") is not None and row.get("email") and row["contact"] in email_by_id
        and normalize_email(row["email"]) != email_by_id[row["contact"]]
    }  # fmt: skip
    alias_of = {alias: pk for alias, (pk, _own) in aliased(Contact, other_addresses).items()}
    for index in list(good):
        row = rows[index]
        if row.get("contact") is not None:
            email = normalize_email(row["email"]) if row.get("email") else None
            if row["contact"] not in email_by_id:
                result.failed[index] = {"contact": [f"No contact with id {row['contact']}."]}
            elif email and email != email_by_id[row["contact"]] and alias_of.get(email) != row["contact"]:
                # Which of the two is right cannot be told; the stored address is not disclosed.
                message = (
                    f"{row['email']!r} is not the e-mail of contact {row['contact']}; send one or make them agree."
                )
                result.failed[index] = {"email": [message]}
            else:
                good[index]["contact_id"] = row["contact"]
        elif (contact_id := by_email.get(normalize_email(row["email"]))) is not None:
            good[index]["contact_id"] = contact_id
        else:
            result.failed[index] = {"email": [f"No contact with email {row['email']!r}."]}
        if index in result.failed:
            del good[index]


def ingest_activities(rows: list) -> ActivityIngestResult:
    """Insert activities; a row whose external_id is already stored (or repeated) counts as a duplicate."""
    result = ActivityIngestResult()
    good = _validated_rows(rows, lambda _index, row, errors: _clean_activity(row, errors), result.failed)
    _resolve_contacts(rows, good, result)
    if connection.vendor == "postgresql":
        _insert_activities_postgresql(list(good.values()), result)
    else:
        _insert_activities_portable(list(good.values()), result)
    _analyze_after_commit(Activity, ActivityTally, written=result.created)
    return result


def _analyze_after_commit(*models: type[models.Model], written: int) -> None:
    """Refresh the planner's statistics of a table that just took many rows (see table_statistics),
    once they are committed, so that the refreshes they queue are not planned blind."""
    transaction.on_commit(lambda: analyze_if_stale(*models, written=written))


ACTIVITY_COLUMNS = ["contact_id", "kind", "occurred_at", "topic", "product", "url", "campaign", "value",
                    "external_id", "created_at"]  # fmt: skip


def _insert_activities_postgresql(good: list[dict], result: ActivityIngestResult) -> None:
    """Rows whose external_id is stored or repeated are skipped (contacts/partitions.py); RETURNING counts the rest."""
    now = timezone.now()
    rows = ((*(v.get(c) for c in ACTIVITY_COLUMNS[:-1]), now) for v in good)
    with transaction.atomic():
        # The partitioned table has no UNIQUE external_id to conflict on: the insert claims the ids.
        inserted = copy_insert(Activity, ACTIVITY_COLUMNS, rows, insert=partial(claim_insert_sql, ACTIVITY_COLUMNS))
    result.created = len(inserted)
    result.duplicates = len(good) - len(inserted)
    result.changed_contact_ids = {contact_id for (contact_id,) in inserted}


def _insert_activities_portable(good: list[dict], result: ActivityIngestResult) -> None:
    external_ids = [v["external_id"] for v in good if v["external_id"]]
    with transaction.atomic():
        stored = set(Activity.objects.filter(external_id__in=external_ids).values_list("external_id", flat=True))
        new = []
        for values in good:
            if values["external_id"]:
                if values["external_id"] in stored:
                    result.duplicates += 1
                    continue
                stored.add(values["external_id"])
            new.append(Activity(**values))
        # ignore_conflicts: a concurrent delivery of the same external_id between the check above and
        # this insert is skipped by the database instead of failing the whole request.
        Activity.objects.bulk_create(new, ignore_conflicts=True, batch_size=BATCH_SIZE)
    result.created = len(new)
    result.changed_contact_ids = {obj.contact_id for obj in new}


# -- deals ------------------------------------------------------------------------------------

DEAL_FIELDS = ["name", "amount", "stage", "created_at", "closed_at"]
DEAL_KEYS = {"external_id", "email", "company_domain", *DEAL_FIELDS}


def upsert_deals(rows: list) -> UpsertResult:
    """Create or update deals matched by external_id; a deal names its contact by e-mail and/or its
    company by domain (both must exist). A new deal needs a name, an amount and one of the two; an
    update writes only the fields a row gives."""
    result = UpsertResult()

    def clean(_index: int, row: dict, errors: RowErrors) -> dict:
        return _clean_deal(row, errors)

    good = _validated_rows(rows, clean, result.failed, key="external_id", noun="deal")
    stages = {
        key: (pk, stage)
        for key, pk, stage in Deal.objects.filter(external_id__in=[v["external_id"] for v in good.values()])
        .values_list("external_id", "pk", "stage")
        .order_by()
    }
    stored = {key: pk for key, (pk, _stage) in stages.items()}
    contact_ids = ids_by_key(Contact, "email", {v["email"] for v in good.values() if "email" in v})
    company_ids = ids_by_key(Company, "domain", {v["company_domain"] for v in good.values() if "company_domain" in v})
    for index, values in list(good.items()):
        errors: RowErrors = {}
        if "email" in values:
            values["contact_id"] = contact_ids.get(values.pop("email"))
            if values["contact_id"] is None:
                errors["email"] = [f"No contact with e-mail {rows[index]['email']!r}; import the contact first."]
        if "company_domain" in values:
            values["company_id"] = company_ids.get(values.pop("company_domain"))
            if values["company_id"] is None:
                errors["company_domain"] = [f"No company with domain {rows[index]['company_domain']!r}."]
        stage = values.get("stage", stages.get(values["external_id"], (None, DealStage.OPEN))[1])
        if stage == DealStage.OPEN:
            if values.get("closed_at"):
                errors["closed_at"] = ["An open deal has no close date: give the stage (won or lost) or no close date."]
            elif "stage" in values:
                values["closed_at"] = None  # reopened
        if values["external_id"] not in stored:
            errors |= {name: ["A new deal needs it."] for name in ("name", "amount") if name not in values}
            if "contact_id" not in values and "company_id" not in values and not errors:
                errors["email"] = ["A new deal needs its contact's e-mail or its company's domain."]
        if errors:
            result.failed[index] = errors
            del good[index]
    _write_deals(good, stored, result)
    return result


def _clean_deal(row: dict, errors: RowErrors) -> dict:
    _unknown_keys(row, DEAL_KEYS, errors)
    values = _clean_fields(row, DEAL_FIELDS, Deal, errors)
    external_id = row.get("external_id")
    if not isinstance(external_id, str) or not external_id.strip() or len(external_id) > 200:
        errors["external_id"] = ["Give the deal's id in the source system (text, at most 200 characters)."]
    values["external_id"] = external_id.strip() if isinstance(external_id, str) else external_id
    for name in ("created_at", "closed_at"):
        if values.get(name) is not None:
            if timezone.is_naive(values[name]):
                values[name] = timezone.make_aware(values[name])
            if problem := year_problem(values[name]):
                errors[name] = [problem]
    email, domain = row.get("email"), row.get("company_domain")
    if email not in (None, ""):
        if not isinstance(email, str):
            errors["email"] = ["Expected an e-mail address (text)."]
        else:
            values["email"] = normalize_email(email)
    if domain not in (None, ""):
        try:
            values["company_domain"] = validate_domain(domain)
        except ValidationError as error:
            errors["company_domain"] = error.messages
    return values


def _write_deals(good: dict[int, dict], stored: dict[str | None, int], result: UpsertResult) -> None:
    """The new deals in one INSERT; the stored ones in one UPDATE per set of given fields."""
    moved_from = dict(
        Deal.objects.filter(pk__in=[stored[v["external_id"]] for v in good.values() if v["external_id"] in stored])
        .exclude(contact=None)
        .values_list("pk", "contact_id")
    )
    new = [Deal(**values) for values in good.values() if values["external_id"] not in stored]
    # ignore_conflicts: a concurrent import of the same id between the look-up and here is skipped.
    Deal.objects.bulk_create(new, ignore_conflicts=True, batch_size=BATCH_SIZE)
    groups: dict[frozenset[str], list[Deal]] = {}
    for values in good.values():
        if values["external_id"] in stored:
            fields = frozenset(values) - {"external_id"}
            groups.setdefault(fields, []).append(Deal(pk=stored[values["external_id"]], **values))
    for fields, group in groups.items():
        if fields:
            Deal.objects.bulk_update(group, sorted(fields), batch_size=BATCH_SIZE)
    ids = dict(lookup_pairs(Deal, "external_id", "id", [v["external_id"] for v in good.values()]))
    for index, values in good.items():
        outcome = RowOutcome(index, ids[values["external_id"]], values["external_id"])
        (result.updated if values["external_id"] in stored else result.created).append(outcome)
    result.changed_contact_ids = {v["contact_id"] for v in good.values() if v.get("contact_id")}
    result.changed_contact_ids |= set(moved_from.values())
    result.changed_contact_ids |= set(
        Deal.objects.filter(pk__in=list(ids.values())).exclude(contact=None).values_list("contact_id", flat=True)
    )
