"""Importing contacts, companies, activities and deals from an uploaded CSV or XLSX file.

upload (`start_import`) -> column mapping (`suggest_mapping`, `check_mapping`) -> preview of the
first rows (`preview`) -> the run (`run_import`, a django-q2 task) that streams the file in
batches through the bulk upsert of contacts.ingest (normalisation included), records progress on
the ImportJob row, stops when cancelled, writes every rejected cell to an error file (row number,
column, value, message) and puts the file's contacts in the static segment "Imported <name> <date>".

Rows are matched by normalised e-mail, company domain or activity and deal external_id, so importing the
same file again changes nothing. Each batch is one transaction: a row is stored whole or not at all.

The two enrichment kinds run the same way through contacts.enrichment: they fill stored contacts
(by e-mail) or companies (by domain), refuse a row matching none, and keep captured values unless
the job says `overwrite_captured`; the cells kept are counted, and marked in the preview.
"""

from __future__ import annotations

import csv
import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task
from rapidfuzz import fuzz, process

from contacts import enrichment, import_files, ingest, writes
from contacts.changes import contacts_imported
from contacts.import_files import FileShape, UnreadableFile
from contacts.models import (
    ENRICHMENT_KINDS,
    Activity,
    Company,
    Contact,
    Deal,
    ImportJob,
    ImportKind,
    ImportStatus,
    PropertyDefinition,
    PropertyType,
    normalize_email,
)
from contacts.normalize import domain as normalize_domain
from contacts.table_statistics import analyze_if_stale
from crmseg_site.model_fields import verbose_name

# Rows per transaction: the first batch, then sized to take about TARGET_BATCH_SECONDS so that the
# progress shown moves at least every couple of seconds however slow the rows are.
BATCH_ROWS = 5000
FIRST_BATCH_ROWS = 500
MIN_BATCH_ROWS = 50
TARGET_BATCH_SECONDS = 1.0
PREVIEW_ROWS = 20
PROPERTY_PREFIX = "props."

# Header names people use for each target, besides the field's own name and label (compared folded).
SYNONYMS = {
    "email": ["e-mail", "email address", "e-mail address", "mail", "work email", "e-mail-adresse"],
    "first_name": ["first", "given name", "forename", "vorname", "prenom", "firstname"],
    "last_name": ["last", "surname", "family name", "nachname", "nom", "lastname"],
    "phone": ["phone number", "telephone", "tel", "mobile", "mobile phone", "telefon", "work phone"],
    "job_title": ["title", "position", "role", "job", "jobtitle", "funktion"],
    "company_name": ["company", "organisation", "organization", "account", "account name", "firma"],
    "company_domain": ["website", "company website", "web site", "url", "company domain", "domain"],
    "country": ["country code", "nation", "land", "pays"],
    "region": ["state", "province", "county", "bundesland"],
    "city": ["town", "stadt", "ville"],
    "postal_code": ["zip", "zip code", "postcode", "plz", "postal"],
    "street_address": ["street", "address", "adresse", "strasse"],
    "lifecycle_stage": ["stage", "lifecycle", "status"],
    "lead_score": ["score"],
    "name": ["company", "company name", "organisation", "organization", "account name"],
    "domain": ["website", "company website", "url", "web site", "company domain"],
    "employee_count": ["employees", "number of employees", "headcount", "size"],
    "annual_revenue": ["revenue", "turnover"],
    "occurred_at": ["date", "timestamp", "time", "when", "occurred"],
    "kind": ["type", "activity", "activity type", "event"],
    "external_id": ["id", "event id", "activity id", "source id"],
}
# A deal file's own names for its columns (its "name" is the deal's, not a company's).
DEAL_SYNONYMS = {
    "external_id": ["id", "deal id", "opportunity id", "source id"],
    "name": ["deal", "deal name", "opportunity", "opportunity name", "title"],
    "amount": ["value", "deal value", "deal amount", "deal size", "betrag"],
    "stage": ["status", "deal stage"],
    "email": ["contact", "contact email", "e-mail", "email address"],
    "company_domain": ["company", "website", "company website", "domain", "account domain"],
    "created_at": ["created", "create date", "created on", "opened"],
    "closed_at": ["closed", "close date", "closed on"],
}
KEY_OF_KIND: dict[str, str] = {
    ImportKind.CONTACTS: "email",
    ImportKind.COMPANIES: "domain",
    ImportKind.ACTIVITIES: "external_id",
    ImportKind.DEALS: "external_id",
    ImportKind.ENRICH_CONTACTS: "email",
    ImportKind.ENRICH_COMPANIES: "domain",
}
DEAL_TARGETS = {
    "external_id": "External id (key)", "name": "Deal name", "amount": "Amount", "stage": "Stage (open, won, lost)",
    "email": "Contact e-mail", "company_domain": "Company domain or website", "created_at": "Created at",
    "closed_at": "Closed at",
}  # fmt: skip
ACTIVITY_TARGETS = ["email", "kind", "occurred_at", "topic", "product", "url", "campaign", "value", "external_id"]
TAG_FIELDS = {"interests", "values", "technologies"}
TAG_SPLIT = re.compile(r"\s*[;,|]\s*")
TRUE, FALSE = {"true", "yes", "y", "1", "ja", "oui", "x"}, {"false", "no", "n", "0", "nein", "non", ""}
DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%Y/%m/%d")


class ImportRefused(ValueError):
    """The file or mapping cannot be imported; nothing was written. The message says why."""


def targets(kind: str, properties: Iterable[PropertyDefinition] = ()) -> dict[str, str]:
    """{target: label} a column of this kind of file can map to."""
    if kind == ImportKind.CONTACTS:
        out = {"email": "E-mail (key)", "company_domain": "Company domain or website", "company_name": "Company name"}
        out |= {name: verbose_name(Contact, name) for name in ingest.CONTACT_FIELDS}
        out.pop("properties", None)
        out |= {f"{PROPERTY_PREFIX}{p.key}": f"{p.label} (props.{p.key})" for p in properties}
        return out
    if kind == ImportKind.DEALS:
        return dict(DEAL_TARGETS)
    if kind == ImportKind.ENRICH_CONTACTS:
        out = {"email": "E-mail (key)"} | {name: verbose_name(Contact, name) for name in enrichment.CONTACT_FIELDS}
        return out | {f"{PROPERTY_PREFIX}{p.key}": f"{p.label} (props.{p.key})" for p in properties}
    if kind == ImportKind.ENRICH_COMPANIES:
        out = {"domain": "Domain or website (key)"}
        return out | {name: verbose_name(Company, name) for name in enrichment.COMPANY_FIELDS}
    if kind == ImportKind.COMPANIES:
        out = {"domain": "Domain or website (key)"}
        return out | {name: verbose_name(Company, name) for name in ingest.COMPANY_FIELDS}
    return {name: name.replace("_", " ") + (" (key)" if name == "external_id" else "") for name in ACTIVITY_TARGETS}


def _fold(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.casefold()).strip()


def suggest_mapping(kind: str, headers: list[str], properties: Iterable[PropertyDefinition] = ()) -> dict[str, str]:
    """{header: target or ""} from header names, labels and synonyms; each target used once."""
    choices: dict[str, str] = {}
    for target, label in targets(kind, properties).items():
        synonyms = DEAL_SYNONYMS if kind == ImportKind.DEALS else SYNONYMS
        names = [target, target.removeprefix(PROPERTY_PREFIX), str(label).split(" (")[0], *synonyms.get(target, [])]
        for name in names:
            choices.setdefault(_fold(name), target)
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for header in headers:
        folded = _fold(header)
        found = choices.get(folded)
        if found is None and folded:
            match = process.extractOne(folded, list(choices), scorer=fuzz.ratio, score_cutoff=85)
            found = choices[match[0]] if match else None
        if found and found not in used:
            mapping[header] = found
            used.add(found)
        else:
            mapping[header] = ""
    return mapping


def check_mapping(kind: str, headers: list[str], mapping: dict[str, str]) -> list[str]:
    """Why this mapping cannot run (empty when it can)."""
    known = targets(kind, PropertyDefinition.objects.all())
    problems = []
    for header, target in mapping.items():
        if header not in headers:
            problems.append(f"{header!r} is not a column of this file.")
        elif target and target not in known:
            problems.append(f"Column {header!r}: {target!r} is not a field a {kind} import can fill.")
    chosen = [t for t in mapping.values() if t]
    for target in sorted({t for t in chosen if chosen.count(t) > 1}):
        columns = ", ".join(repr(h) for h, t in mapping.items() if t == target)
        problems.append(f"Columns {columns} all map to {target}; map one column to each field.")
    key = KEY_OF_KIND[kind]
    if key not in chosen:
        problems.append(f"No column maps to {key}, which {kind} are matched by; map one to it.")
    if kind == ImportKind.ACTIVITIES:
        problems += [f"No column maps to {t}; every activity needs one." for t in ("email", "kind", "occurred_at")
                     if t not in chosen]  # fmt: skip
    if kind in ENRICHMENT_KINDS and key in chosen and not set(chosen) - {key}:
        problems.append(f"Only {key} is mapped; map the columns the enrichment fills.")
    return problems


def start_import(upload: File, *, kind: str, user) -> ImportJob:
    """Store the upload, read its header and record the import (status: waiting for its mapping)."""
    if kind not in ImportKind.values:
        raise ImportRefused(f"{kind!r} is not something to import; choose one of {', '.join(ImportKind.values)}.")
    limit = settings.IMPORT_MAX_BYTES
    name, size = upload.name or "upload", upload.size or 0
    if size > limit:
        raise ImportRefused(f"{name} is {size:,} bytes; files up to {limit:,} bytes can be imported.")
    directory = Path(settings.IMPORT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}{Path(name).suffix.lower()[:10]}"
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for chunk in upload.chunks():
            digest.update(chunk)
            out.write(chunk)
    try:
        shape = import_files.inspect(path, name)
    except UnreadableFile as error:
        path.unlink(missing_ok=True)
        raise ImportRefused(str(error)) from None
    mapping = suggest_mapping(kind, shape.headers, PropertyDefinition.objects.all())
    return ImportJob.objects.create(
        kind=kind, file_name=name[:255], stored_path=str(path), checksum=digest.hexdigest(), size=size,
        file_format=shape.file_format, encoding=shape.encoding, delimiter=shape.delimiter, headers=shape.headers,
        mapping=mapping, created_by=user if user and user.is_authenticated else None,
    )  # fmt: skip


def _shape(job: ImportJob) -> FileShape:
    return FileShape(job.file_format, job.encoding, job.delimiter, job.headers)


@dataclass
class CellError:
    row: int
    column: str
    value: str
    message: str


@dataclass
class Converted:
    """One file row as an ingest row, or the errors of its cells."""

    number: int
    values: dict
    errors: list[CellError] = field(default_factory=list)


class Converter:
    """File cells -> the typed values contacts.ingest expects, with per-cell errors."""

    def __init__(self, job: ImportJob) -> None:
        self.kind = job.kind
        targets = [(i, h, job.mapping.get(h, "")) for i, h in enumerate(job.headers) if job.mapping.get(h)]
        keys = [t.removeprefix(PROPERTY_PREFIX) for _i, _h, t in targets if t.startswith(PROPERTY_PREFIX)]
        self.properties = {d.key: d for d in PropertyDefinition.objects.filter(key__in=keys)}
        self.fields = {f.name: f for f in _model(job.kind)._meta.fields}
        # (index, header, property key or "", target, how to read its cells), chosen once per column.
        self.columns = [
            (i, h, t.removeprefix(PROPERTY_PREFIX) if t.startswith(PROPERTY_PREFIX) else "", t, self._reader(t))
            for i, h, t in targets
        ]

    def convert(self, row: import_files.Row) -> Converted:
        converted = Converted(row.number, {})
        values = converted.values
        for index, header, prop, target, read in self.columns:
            cell = row.cells[index]
            if cell == "":
                continue  # an empty cell leaves the stored value as it is
            if cell == import_files.UNCOMPUTED_FORMULA:
                message = "A formula the spreadsheet never computed; open and save the file in Excel, upload it again."
                converted.errors.append(CellError(row.number, header, "(formula)", message))
                continue
            try:
                value = read(cell)
            except ValueError as error:
                converted.errors.append(CellError(row.number, header, cell, str(error)))
                continue
            if prop:
                values.setdefault("properties", {})[prop] = value
            else:
                values[target] = value
        return converted

    def _reader(self, target: str) -> Callable[[str], object]:
        if target.startswith(PROPERTY_PREFIX):
            kind = self.properties[target.removeprefix(PROPERTY_PREFIX)].type
            return partial(_typed, kind=kind)
        if self.kind == ImportKind.ACTIVITIES:
            return _activity_time if target == "occurred_at" else str
        if self.kind == ImportKind.DEALS:
            if target == "amount":
                return partial(_typed, kind=PropertyType.NUMBER)
            return _deal_time if target in ("created_at", "closed_at") else str
        model_field = self.fields.get(target)
        if target in TAG_FIELDS:
            return partial(_typed, kind=PropertyType.TAGS)
        if model_field is not None and model_field.get_internal_type() == "BooleanField":
            return partial(_typed, kind=PropertyType.BOOL)
        if model_field is not None and model_field.get_internal_type() == "DateField":
            return partial(_typed, kind=PropertyType.DATE)
        return str


def _typed(cell: str, kind: str) -> object:
    if kind == PropertyType.NUMBER:
        try:
            number = float(cell.replace(",", ".")) if cell.count(",") == 1 and "." not in cell else float(cell)
        except ValueError:
            raise ValueError(f"{cell!r} is not a number.") from None
        return int(number) if number.is_integer() else number
    if kind == PropertyType.BOOL:
        folded = cell.casefold()
        if folded in TRUE or folded in FALSE:
            return folded in TRUE
        raise ValueError(f"{cell!r} is not yes or no (yes/no, true/false, 1/0).")
    if kind == PropertyType.DATE:
        return _date(cell).isoformat()
    if kind == PropertyType.TAGS:
        return [tag for tag in TAG_SPLIT.split(cell) if tag]
    return cell


def _date(cell: str) -> date:
    for pattern in DATE_FORMATS:
        try:
            return datetime.strptime(cell[:10] if pattern == "%Y-%m-%d" else cell, pattern).date()
        except ValueError:
            continue
    raise ValueError(f"{cell!r} is not a date (YYYY-MM-DD or DD.MM.YYYY).")


def _deal_time(cell: str) -> str:
    """A date (any of DATE_FORMATS) or an ISO date-time, as ISO text."""
    try:
        return _date(cell).isoformat() if len(cell) <= 10 else _activity_time(cell)
    except ValueError:
        raise ValueError(f"{cell!r} is not a date (YYYY-MM-DD, DD.MM.YYYY or an ISO date-time).") from None


def _activity_time(cell: str) -> str:
    try:
        return datetime.fromisoformat(cell.replace(" ", "T", 1) if len(cell) > 10 else cell).isoformat()
    except ValueError:
        return cell  # ingest names the expected form


@dataclass
class BatchOutcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[CellError] = field(default_factory=list)
    rejected: int = 0
    contact_ids: list[int] = field(default_factory=list)
    kept: list[tuple[int, str]] = field(default_factory=list)  # (row, column) not written: a captured value is stored


class Importer:
    """Runs one job's rows through contacts.ingest, batch by batch."""

    def __init__(self, job: ImportJob, *, dry_run: bool = False) -> None:
        self.job = job
        self.dry_run = dry_run
        self.converter = Converter(job)
        self.column_of = {target: header for header, target in job.mapping.items() if target}
        self.key = KEY_OF_KIND[job.kind]
        # 8-byte digests of the keys met so far, sorted in one array (8 bytes a row: a million rows
        # take 8 MB, where a set of ints would take ~70 MB), plus those of the batch being read.
        self.seen_keys = np.empty(0, dtype=np.uint64)
        self.batch_keys: set[int] = set()

    def batch(self, rows: list[import_files.Row]) -> BatchOutcome:
        outcome = BatchOutcome()
        good: list[Converted] = []
        for row in rows:
            converted = self.converter.convert(row)
            if not converted.errors and (problem := self._repeated_key(converted)):
                converted.errors.append(problem)
            if converted.errors:
                outcome.errors += converted.errors
                outcome.rejected += 1
            else:
                good.append(converted)
        if good:
            self._write(good, outcome)
        outcome.errors.sort(key=lambda error: error.row)  # the error file in the file's order
        self._remember_batch_keys()
        return outcome

    def _remember_batch_keys(self) -> None:
        new = np.fromiter(sorted(self.batch_keys), dtype=np.uint64, count=len(self.batch_keys))
        self.seen_keys = np.insert(self.seen_keys, np.searchsorted(self.seen_keys, new), new)
        self.batch_keys.clear()

    def _seen(self, digest: int) -> bool:
        if digest in self.batch_keys:
            return True
        index = int(np.searchsorted(self.seen_keys, np.uint64(digest)))
        return index < len(self.seen_keys) and int(self.seen_keys[index]) == digest

    def _repeated_key(self, converted: Converted) -> CellError | None:
        raw = converted.values.get(self.key)
        if not isinstance(raw, str):
            return None  # ingest reports the missing key
        key = ingest_key(self.key, raw)
        digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
        if self._seen(digest):
            message = f"The same {self.key} as an earlier row of this file; each record once, please."
            return CellError(converted.number, self.column_of[self.key], raw, message)
        self.batch_keys.add(digest)
        return None

    def _write(self, good: list[Converted], outcome: BatchOutcome) -> None:
        values = [c.values for c in good]
        with transaction.atomic():
            # Through the write path, which announces the contacts it changed after commit.
            if self.job.kind == ImportKind.ACTIVITIES:
                ingested = writes.ingest_activities(values)
                outcome.created = ingested.created
                outcome.unchanged = ingested.duplicates
                failed = ingested.failed
            else:
                failed = self._upsert(values, good, outcome)
            for index, errors in failed.items():
                outcome.rejected += 1
                outcome.errors += self._cell_errors(good[index], errors)
            if self.dry_run:
                transaction.set_rollback(True)
                return
            if outcome.contact_ids:
                segment_id = contacts_imported(self.job.pk, self.job.segment_name, outcome.contact_ids)
                if segment_id and self.job.segment_id != segment_id:
                    self.job.segment_id = segment_id
                    ImportJob.objects.filter(pk=self.job.pk).update(segment_id=segment_id)

    def _upsert(self, values: list[dict], good: list[Converted], outcome: BatchOutcome) -> dict[int, dict]:
        """Contacts, companies, deals or an enrichment: counts into `outcome`; returns the rows refused."""
        kind = self.job.kind
        # Deals are compared before and after; the other writes say themselves which rows they left as they were.
        before = self._snapshot(values) if kind == ImportKind.DEALS else {}
        overwrite = self.job.overwrite_captured
        upserts: dict[str, Callable[[list], ingest.UpsertResult]] = {
            ImportKind.CONTACTS: writes.upsert_contacts,
            ImportKind.COMPANIES: writes.upsert_companies,
            ImportKind.DEALS: writes.upsert_deals,
            ImportKind.ENRICH_CONTACTS: partial(writes.enrich_contacts, overwrite=overwrite),
            ImportKind.ENRICH_COMPANIES: partial(writes.enrich_companies, overwrite=overwrite),
        }
        result = upserts[kind](values)
        if kind == ImportKind.DEALS:
            after = self._snapshot(values)
            result.unchanged = [r for r in result.updated if before.get(r.key) == after.get(r.key)]
        outcome.created = len(result.created)
        outcome.unchanged = len(result.unchanged)
        outcome.updated = len(result.updated) - len(result.unchanged)
        if kind in (ImportKind.CONTACTS, ImportKind.ENRICH_CONTACTS):
            outcome.contact_ids = [r.id for r in (*result.created, *result.updated)]
        if isinstance(result, enrichment.EnrichResult):
            # Derived values (a title's function) have no column: only the file's own cells are reported.
            kept = ((good[index].number, path) for index, paths in result.kept.items() for path in paths)
            outcome.kept = [(number, self.column_of[path]) for number, path in kept if path in self.column_of]
        return result.failed

    def _snapshot(self, values: list[dict]) -> dict[str, tuple]:
        """What the mapped fields of the stored deals hold: {key: values} (to count unchanged rows)."""
        columns = [t for t in self.column_of if t in self.converter.fields]
        columns += ["company_id"] if "company_domain" in self.column_of else []
        columns += ["contact_id"] if "email" in self.column_of else []
        keys = [ingest_key(self.key, v.get(self.key)) for v in values]
        rows = Deal.objects.filter(**{f"{self.key}__in": keys}).values_list(self.key, *columns)
        return {row[0]: row[1:] for row in rows}

    def _cell_errors(self, converted: Converted, errors: dict[str, list[str]]) -> list[CellError]:
        out = []
        for name, messages in errors.items():
            for message in messages:
                target = name
                if name == "properties" and message.startswith(PROPERTY_PREFIX):
                    target = message.split(":", 1)[0]
                column = self.column_of.get(target) or self.column_of.get(self.key, "")
                value = _shown(converted.values, target)
                out.append(CellError(converted.number, column, value, message))
        return out


def _model(kind: str) -> type[Contact | Company | Deal]:
    by_kind: dict[str, type[Contact | Company | Deal]] = {
        ImportKind.COMPANIES: Company, ImportKind.ENRICH_COMPANIES: Company, ImportKind.DEALS: Deal,
    }  # fmt: skip
    return by_kind.get(kind, Contact)


def normalize_domain_quietly(value: str) -> str:
    try:
        return normalize_domain(value)
    except ValidationError:
        return value  # ingest names the bad domain


def ingest_key(key: str, value: object) -> str:
    if not isinstance(value, str):
        return ""
    return normalize_email(value) if key == "email" else normalize_domain_quietly(value) if key == "domain" else value


def _shown(values: dict, target: str) -> str:
    if target.startswith(PROPERTY_PREFIX):
        value = values.get("properties", {}).get(target.removeprefix(PROPERTY_PREFIX))
    else:
        value = values.get(target)
    return "" if value is None else str(value)


@dataclass
class PreviewRow:
    number: int
    cells: list[tuple[str, str, bool]]  # (value, error message or "", kept: a captured value stays) per column
    rejected: bool


def preview(job: ImportJob, *, limit: int = PREVIEW_ROWS) -> list[PreviewRow]:
    """The first rows with each cell's validation, checked by a run that is rolled back."""
    importer = Importer(job, dry_run=True)
    rows = []
    for row in import_files.rows(Path(job.stored_path), _shape(job)):
        rows.append(row)
        if len(rows) >= limit:
            break
    outcome = importer.batch(rows)
    by_cell: dict[tuple[int, str], str] = {}
    rejected_rows = set()
    for error in outcome.errors:
        rejected_rows.add(error.row)
        by_cell[(error.row, error.column)] = error.message
    kept = set(outcome.kept)
    return [
        PreviewRow(
            row.number,
            [
                (cell, by_cell.get((row.number, h), ""), (row.number, h) in kept)
                for cell, h in zip(row.cells, job.headers, strict=True)
            ],
            row.number in rejected_rows,
        )
        for row in rows
    ]


def queue_import(job: ImportJob) -> bool:
    """Queue the run after commit; False when the job is not waiting for it (already queued or run)."""
    claimed = ImportJob.objects.filter(pk=job.pk, status=ImportStatus.MAPPING).update(status=ImportStatus.QUEUED)
    if claimed:
        transaction.on_commit(lambda: async_task("contacts.tasks.run_import", job.pk, group="imports"))
    return bool(claimed)


def cancel_import(job: ImportJob) -> bool:
    """Stop a queued import at once, or ask a running one to stop after its current batch (it then
    reports what it did); False when it has finished already."""
    jobs = ImportJob.objects.filter(pk=job.pk)
    before_start = jobs.filter(status=ImportStatus.QUEUED).update(
        status=ImportStatus.CANCELLED,
        finished_at=timezone.now(),
        message="Cancelled before it started: nothing imported.",
    )
    return bool(before_start or jobs.filter(status=ImportStatus.RUNNING).update(status=ImportStatus.CANCELLING))


def error_file_path(job: ImportJob) -> Path:
    return Path(settings.IMPORT_DIR) / f"import-{job.pk}-errors.csv"


ERROR_HEADER = ["row", "column", "value", "message"]


def run_import(job_id: int) -> str:
    """The import task: claims the queued job (a redelivered task does nothing) and runs it."""
    now = timezone.now()
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportStatus.QUEUED).update(
        status=ImportStatus.RUNNING, started_at=now, progress_at=now
    )
    if not claimed:
        return f"import {job_id}: not queued (cancelled, or run by another worker)"
    job = ImportJob.objects.get(pk=job_id)
    importer = Importer(job)
    path = error_file_path(job)
    started = time.monotonic()
    try:
        with open(path, "w", newline="", encoding="utf-8") as error_file:
            writer = csv.writer(error_file)
            writer.writerow(ERROR_HEADER)
            batch: list[import_files.Row] = []
            size = min(FIRST_BATCH_ROWS, BATCH_ROWS)
            for row in import_files.rows(Path(job.stored_path), _shape(job)):
                batch.append(row)
                if len(batch) >= size:
                    batch_started = time.monotonic()
                    if not _run_batch(job, importer, batch, writer):
                        return _finish(job, ImportStatus.CANCELLED, started)
                    size = _next_size(size, time.monotonic() - batch_started)
                    batch = []
            if batch and not _run_batch(job, importer, batch, writer):
                return _finish(job, ImportStatus.CANCELLED, started)
    except Exception as error:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportStatus.FAILED, finished_at=timezone.now(), message=f"Stopped by an error: {error}"
        )
        raise
    return _finish(job, ImportStatus.DONE, started)


def _next_size(size: int, seconds: float) -> int:
    wanted = int(size * TARGET_BATCH_SECONDS / max(seconds, 0.001))
    return max(min(MIN_BATCH_ROWS, BATCH_ROWS), min(BATCH_ROWS, wanted, size * 2))


def _run_batch(job: ImportJob, importer: Importer, batch: list[import_files.Row], writer) -> bool:
    """Import one batch and record progress; False when the job was cancelled meanwhile."""
    if ImportJob.objects.filter(pk=job.pk, status=ImportStatus.CANCELLING).exists():
        return False
    outcome = importer.batch(batch)
    for error in outcome.errors:
        writer.writerow([error.row, error.column, error.value, error.message])
    ImportJob.objects.filter(pk=job.pk).update(
        rows_done=F("rows_done") + len(batch),
        progress=batch[-1].progress,
        progress_at=timezone.now(),
        created=F("created") + outcome.created,
        updated=F("updated") + outcome.updated,
        unchanged=F("unchanged") + outcome.unchanged,
        rejected=F("rejected") + outcome.rejected,
        kept=F("kept") + len(outcome.kept),
    )
    return True


def _finish(job: ImportJob, status: str, started: float) -> str:
    job.refresh_from_db()
    # Batches analyse the table while it is small; a large import ends with fresh statistics too.
    table = Activity if job.kind == ImportKind.ACTIVITIES else _model(job.kind)
    analyze_if_stale(table, written=job.created + job.updated)
    seconds = time.monotonic() - started
    done = "Enriched" if job.is_enrichment else "Imported"
    what = "Cancelled after" if status == ImportStatus.CANCELLED else done
    job.status = status
    job.finished_at = timezone.now()
    created = "" if job.is_enrichment else f"{job.created:,} created, "
    job.message = (
        f"{what} {job.rows_done:,} rows in {seconds:.0f} s: {created}{job.updated:,} updated, "
        f"{job.unchanged:,} unchanged, {job.rejected:,} rejected."
    )
    if job.is_enrichment:
        job.message += f" {job.kept:,} cells kept their captured value" + (
            " (overwrite was on)." if job.overwrite_captured else "."
        )
    if status == ImportStatus.DONE:
        job.progress = 1.0
    job.save(update_fields=["status", "finished_at", "message", "progress"])
    return job.message


def property_key(header: str) -> str:
    """The property key a column name would get if declared: 'Plan seats' -> 'plan_seats'."""
    return _fold(header).replace(" ", "_")[:63]
