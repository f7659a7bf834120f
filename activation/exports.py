"""Running one export: claim the run, fix its members set-based, write or send them, record the result.

The steps of execute_run():

1. claim: a conditional UPDATE moves the run from queued/failed to running. The partial unique
   constraint exportrun_one_running_per_activation makes a second running run of the same
   activation impossible, so two workers can never overlap.
2. stage: one INSERT ... SELECT copies the audience (activation.audience.audience) into
   ExportRunMember as adds (all of it in full mode, the new ones in delta mode) and one more copies
   the snapshot rows that left the audience as removes. The file and the snapshot both read this.
3. deliver: stream the staged contacts with .iterator(chunk_size) (a server-side cursor on
   PostgreSQL), write a file under MEDIA_ROOT to "<name>.part" and rename it when complete, or post
   signed webhook batches. Contacts that cannot be normalised are skipped, counted and reported.
   Each row a file gives a destination leaves its removal row (activation.formats) in a staged
   `sent` row; the removal file writes the removal rows the snapshot kept, never reading Contact, so a
   contact deleted or erased since, or changed since, is removed as the destination received it.
   Every delta run writes a removal file, and a full run that removes someone does too.
4. finish: in one transaction, apply the staged adds/removes to ExportedMember (the base of the
   next delta, with the removal rows) and mark the run succeeded. On any failure the temporary file
   is removed, the run is failed with the error, and the snapshot is untouched, so running it again
   is safe.
"""

from __future__ import annotations

import array
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, QuerySet, Subquery
from django.utils import timezone
from psycopg.types.json import Jsonb

from activation import normalize, webhooks
from activation.audience import audience, members
from activation.formats import WEBHOOK_FIELDS, FileFormat, file_format, webhook_member
from activation.held_back import held_back, with_skipped
from activation.models import (
    Activation,
    ActivationMode,
    DestinationKind,
    ExportedMember,
    ExportRun,
    ExportRunMember,
    MemberAction,
    RunStatus,
)
from activation.run_watch import beat, claim_fields, fail_dead_runs, retry_at
from contacts.models import Contact
from crmseg_site.liveness import heartbeat
from crmseg_site.replicas import replica_reads
from segments.models import SegmentStatus

logger = logging.getLogger(__name__)


class RunRefused(Exception):
    """The run cannot go ahead for a reason the operator can act on; the message says which."""


class RunSuperseded(Exception):
    """This attempt was failed by the watchdog while it ran; the run row belongs to the next one."""


@dataclass
class Outcome:
    exported: int = 0
    skipped: int = 0
    skipped_rows: list[dict[str, object]] = field(default_factory=list)
    skipped_ids: array.array = field(default_factory=lambda: array.array("q"))
    files: dict[str, tuple[str, int, str]] = field(default_factory=dict)  # action -> (path, size, sha256)

    def skip(self, contact_id: int, email: str, reason: str) -> None:
        self.skipped += 1
        self.skipped_ids.append(contact_id)
        if len(self.skipped_rows) < settings.ACTIVATION_REPORT_MAX_ROWS:
            self.skipped_rows.append({"contact_id": contact_id, "email": email, "reason": reason})


def start_run(activation: Activation, *, requested_by=None) -> ExportRun:
    return ExportRun.objects.create(activation=activation, mode=activation.mode, requested_by=requested_by)


def execute_run(run_id: int, *, sleep: Callable[[float], None] = time.sleep) -> ExportRun:
    """Run (or re-run, after a failure) one export. Safe to call twice: a finished run is left alone."""
    run = ExportRun.objects.select_related("activation__segment", "activation__destination").get(pk=run_id)
    fail_dead_runs(now=timezone.now(), activation_id=run.activation_id)  # a dead worker's run blocks no more
    if not _claim(run):
        return _refuse_busy(run)
    run.refresh_from_db()
    cleanup: list[Path] = []
    try:
        with heartbeat(lambda at: beat(run.pk, run.attempts, at)):  # the watchdog sees it alive (run_watch.py)
            _check(run.activation)
            _stage(run)
            outcome = _deliver(run, cleanup=cleanup, sleep=sleep)
            _finish(run, outcome)
    except Exception as exc:
        _fail(run, exc, cleanup=cleanup)
    run.refresh_from_db()
    return run


def _claim(run: ExportRun) -> bool:
    claimable = ExportRun.objects.filter(pk=run.pk, status__in=[RunStatus.QUEUED, RunStatus.FAILED])
    try:
        with transaction.atomic():
            claimed = claimable.update(
                status=RunStatus.RUNNING,
                started_at=timezone.now(),
                finished_at=None,
                attempts=F("attempts") + 1,
                **claim_fields(),
            )
    except IntegrityError:
        return False  # another run of this activation is running
    return claimed == 1


def _refuse_busy(run: ExportRun) -> ExportRun:
    other = ExportRun.objects.filter(activation_id=run.activation_id, status=RunStatus.RUNNING).exclude(pk=run.pk)
    other_id = other.values_list("pk", flat=True).first()
    if other_id is not None:
        ExportRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.FAILED,
            finished_at=timezone.now(),
            error=f"Run {other_id} of this activation is still running; runs of one activation never overlap.",
        )
    run.refresh_from_db()
    return run


def _check(activation: Activation) -> None:
    if _archived(activation) and not _erased_in_snapshot(activation).exists():
        raise RunRefused(
            f"Segment {activation.segment.name!r} is archived; archived segments are not exported "
            "(only the removals of erased contacts are still sent)."
        )
    try:
        activation.destination.full_clean()
    except ValidationError as exc:
        problems = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items())
        raise RunRefused(f"Destination {activation.destination.name!r} is not usable: {problems}") from None


def _archived(activation: Activation) -> bool:
    return activation.segment.status == SegmentStatus.ARCHIVED


def _erased_in_snapshot(activation: Activation) -> QuerySet[ExportedMember]:
    """Snapshot rows of contacts that no longer exist: the destination still has them."""
    exists = Contact.objects.filter(pk=OuterRef("contact_id"))
    return ExportedMember.objects.filter(activation=activation).filter(~Exists(exists))


def _stage(run: ExportRun) -> None:
    """Stage the run's adds and removes. An archived segment's run adds no one and removes only the
    erased contacts: the audience is left as it was, but deletions still reach the destination."""
    activation = run.activation
    archived = _archived(activation)
    target = Contact.objects.none() if archived else audience(activation).order_by()
    in_snapshot = ExportedMember.objects.filter(activation=activation, contact_id=OuterRef("pk"))
    with transaction.atomic():
        ExportRunMember.objects.filter(run=run).delete()
        new_ones = target.filter(~Exists(in_snapshot))
        adds = target if run.mode == ActivationMode.FULL else new_ones
        staged_adds = 0 if archived else _insert_members(run, MemberAction.ADD, adds.values(cid=F("pk")))
        still_there = audience(activation).filter(pk=OuterRef("contact_id"))
        gone = ExportedMember.objects.filter(activation=activation).filter(~Exists(still_there))
        if archived:
            gone = _erased_in_snapshot(activation)
        removed = _insert_members(run, MemberAction.REMOVE, gone.values(cid=F("contact_id"), kept=F("removal")))
        audience_size = staged_adds if run.mode == ActivationMode.FULL else target.count()
        added = staged_adds if run.mode == ActivationMode.DELTA else new_ones.count()
        members_count = members(activation).count()
        ExportRun.objects.filter(pk=run.pk).update(
            members_count=members_count,
            suppressed_count=members_count - audience_size,
            added_count=added,
            removed_count=removed,
            held_back=held_back(activation),
        )
    minimum = activation.destination.effective_min_audience_size()
    if audience_size < minimum and not archived:
        raise RunRefused(
            f"Audience of {audience_size} members is below the minimum of {minimum} for "
            f"{activation.destination.get_kind_display()} (destination {activation.destination.name!r}); "
            "nothing was exported."
        )


def _insert_members(run: ExportRun, action: str, source: QuerySet) -> int:
    """INSERT ... SELECT of `source`'s `cid` (and `kept`, the removal rows, when it has them): no
    contact id travels through Python."""
    sql, params = source.query.sql_with_params()
    table = connection.ops.quote_name(ExportRunMember._meta.db_table)
    kept = "staged.kept" if "kept" in source.query.annotations else "NULL"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (run_id, contact_id, action, removal) "
            f"SELECT %s, staged.cid, %s, {kept} FROM ({sql}) staged",
            [run.pk, action, *params],
        )
        return cursor.rowcount


def staged_contacts(run: ExportRun, action: str, fields: tuple[str, ...]) -> Iterator[Contact]:
    """The staged contacts of one action, in id order, streamed in chunks (bounded memory)."""
    return _contacts(ExportRunMember.objects.filter(run=run, action=action), fields)


def _contacts(staged: QuerySet[ExportRunMember], fields: tuple[str, ...]) -> Iterator[Contact]:
    # The run's heaviest read: on the read replica once it has replayed the staging (committed
    # before this scope opens), else on the primary (crmseg_site/replicas.py).
    with replica_reads():
        db = Contact.objects.db
    # Contact.__init__ reads lifecycle_stage (to notice stage changes on save): load it, or each row costs a query.
    contacts = Contact.objects.using(db).filter(pk__in=staged.values("contact_id"))
    contacts = contacts.only("lifecycle_stage", *fields).order_by("pk")
    if any("__" in name for name in fields):
        contacts = contacts.select_related("company")
    return contacts.iterator(chunk_size=settings.ACTIVATION_EXPORT_CHUNK_SIZE)


def _deliver(run: ExportRun, *, cleanup: list[Path], sleep: Callable[[float], None]) -> Outcome:
    destination = run.activation.destination
    outcome = Outcome()
    if destination.kind == DestinationKind.WEBHOOK:
        _send_webhook(run, outcome, sleep=sleep)
        return outcome
    fmt = file_format(destination)
    if not _archived(run.activation):
        adds = _added_rows(run, fmt, outcome)
        outcome.exported = _write_file(run, MemberAction.ADD, adds, fmt, outcome, cleanup=cleanup)
    removals = ExportRunMember.objects.filter(run=run, action=MemberAction.REMOVE)
    if run.mode == ActivationMode.DELTA or removals.exists():
        _write_file(run, MemberAction.REMOVE, _removal_rows(run, fmt), fmt, outcome, cleanup=cleanup)
    return outcome


def _added_rows(run: ExportRun, fmt: FileFormat, outcome: Outcome) -> Iterator[list[str]]:
    """The rows of the staged adds; each one's removal row is staged (`sent`) as it goes."""
    removals: list[tuple[int, list[str]]] = []
    for contact in staged_contacts(run, MemberAction.ADD, fmt.fields):
        try:
            cells = fmt.row(contact, run.activation.destination)
        except normalize.Unusable as exc:
            outcome.skip(contact.pk, contact.email, str(exc))
            continue
        removals.append((contact.pk, fmt.removal(cells)))
        if len(removals) >= settings.ACTIVATION_EXPORT_CHUNK_SIZE:
            _stage_sent(run, removals)
            removals = []
        yield cells
    _stage_sent(run, removals)


def _stage_sent(run: ExportRun, removals: list[tuple[int, list[str]]]) -> None:
    """Stage one chunk of (contact id, removal row) as `sent` rows: a COPY on PostgreSQL (a third of
    the export's time went into bulk_create's statements at 100k members), bulk_create elsewhere."""
    if connection.vendor != "postgresql":
        rows = [ExportRunMember(run=run, action=MemberAction.SENT, contact_id=pk, removal=row) for pk, row in removals]
        ExportRunMember.objects.bulk_create(rows)
        return
    table = connection.ops.quote_name(ExportRunMember._meta.db_table)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} (run_id, action, contact_id, removal) FROM STDIN") as copy,
    ):
        for pk, row in removals:
            copy.write_row((run.pk, MemberAction.SENT, pk, Jsonb(row)))


def _removal_rows(run: ExportRun, fmt: FileFormat) -> Iterator[list[str]]:
    """The removal rows the snapshot kept for the staged removes, in contact order. A snapshot row
    from before removal rows were kept has none: it is made from the contact, if it still exists."""
    staged = ExportRunMember.objects.filter(run=run, action=MemberAction.REMOVE).order_by("contact_id")
    chunk = settings.ACTIVATION_EXPORT_CHUNK_SIZE
    kept = staged.filter(removal__isnull=False).values_list("removal", flat=True).iterator(chunk_size=chunk)
    yield from (row for row in kept if row is not None)
    for contact in _contacts(staged.filter(removal__isnull=True), fmt.fields):
        try:
            yield fmt.removal(fmt.row(contact, run.activation.destination))
        except normalize.Unusable:
            continue  # never sent: nothing to remove


class _HashingFile:
    """Writes text as UTF-8 while counting bytes and hashing them, so the file is never read back."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, text: str) -> None:
        data = text.encode()
        self.digest.update(data)
        self.size += len(data)
        self.handle.write(data)


def _write_file(
    run: ExportRun, action: str, rows: Iterator[list[str]], fmt: FileFormat, outcome: Outcome, *, cleanup: list[Path]
) -> int:
    relative = run.export_path(removals=action != MemberAction.ADD)
    final = Path(settings.MEDIA_ROOT) / relative
    temp = final.with_name(final.name + ".part")
    final.parent.mkdir(parents=True, exist_ok=True)
    cleanup.extend([temp, final])  # a failed run keeps neither: its files are meaningless
    written = 0
    with _private_file(temp) as handle:
        out = _HashingFile(handle)
        out.write(_csv_line(fmt.header))
        for cells in rows:
            out.write(_csv_line(cells))
            written += 1
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, final)
    outcome.files[action] = (relative, out.size, out.digest.hexdigest())
    return written


def _private_file(path: Path) -> BinaryIO:
    """Open `path` for writing, readable and writable by the service user only (0600): the files
    hold personal data, and whoever else has a shell on the host has no business reading them."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a leftover .part from a crashed run keeps its old mode otherwise
    return os.fdopen(descriptor, "wb")


def _csv_line(cells: list[str]) -> str:
    return ",".join(_quote(cell) for cell in cells) + "\n"


def _quote(cell: str) -> str:
    if any(ch in cell for ch in ',"\n\r'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _send_webhook(run: ExportRun, outcome: Outcome, *, sleep: Callable[[float], None]) -> None:
    removed_ids = ExportRunMember.objects.filter(run=run, action=MemberAction.REMOVE).order_by("contact_id")
    removed = ({"id": contact_id} for contact_id in removed_ids.values_list("contact_id", flat=True).iterator())
    _post_batches(run, MemberAction.REMOVE, removed, sleep=sleep)
    outcome.exported = _post_batches(run, MemberAction.ADD, _webhook_adds(run, outcome), sleep=sleep)


def _webhook_adds(run: ExportRun, outcome: Outcome) -> Iterator[dict[str, object]]:
    for contact in staged_contacts(run, MemberAction.ADD, WEBHOOK_FIELDS):
        try:
            yield webhook_member(contact)
        except normalize.Unusable as exc:
            outcome.skip(contact.pk, contact.email, str(exc))


def _post_batches(run: ExportRun, action: str, items: Iterator[dict], *, sleep: Callable[[float], None]) -> int:
    destination = run.activation.destination
    sent = 0
    batch: list[dict] = []
    number = 0

    def flush() -> None:
        nonlocal number
        number += 1
        payload = {
            "activation": run.activation_id,
            "run": run.pk,
            "segment": run.activation.segment.slug,
            "action": action,
            "batch": number,
            "members": batch,
        }
        # Stable across retries and re-runs of this run while the batch content is the same.
        digest = hashlib.sha256(webhooks.encode(payload)).hexdigest()[:16]
        key = f"crmseg-run-{run.pk}-{action}-{number}-{digest}"
        webhooks.post_json(destination, payload, idempotency_key=key, sleep=sleep)

    for item in items:
        batch.append(item)
        sent += 1
        if len(batch) >= destination.batch_size:
            flush()
            batch = []
    if batch:
        flush()
    return sent


def _finish(run: ExportRun, outcome: Outcome) -> None:
    now = timezone.now()
    with transaction.atomic():
        staged = ExportRunMember.objects.filter(run=run)
        for start in range(0, len(outcome.skipped_ids), 1000):
            chunk = outcome.skipped_ids[start : start + 1000].tolist()
            staged.filter(action=MemberAction.ADD, contact_id__in=chunk).delete()
        ExportedMember.objects.filter(
            activation_id=run.activation_id,
            contact_id__in=staged.filter(action=MemberAction.REMOVE).values("contact_id"),
        ).delete()
        in_snapshot = ExportedMember.objects.filter(activation_id=run.activation_id, contact_id=OuterRef("contact_id"))
        fresh = staged.filter(action=MemberAction.ADD).filter(~Exists(in_snapshot))
        sent = staged.filter(action=MemberAction.SENT, contact_id=OuterRef("contact_id")).values("removal")[:1]
        _insert_snapshot(run, fresh.values(cid=F("contact_id"), kept=Subquery(sent)), now=now)
        if run.mode == ActivationMode.FULL:
            # A full run sent every member again: the snapshot keeps the rows sent last.
            resent = ExportedMember.objects.filter(activation_id=run.activation_id).filter(Exists(sent))
            resent.update(removal=Subquery(sent))
        staged.delete()
        added_path, added_size, added_sha = outcome.files.get(MemberAction.ADD, ("", None, ""))
        removed_path, removed_size, removed_sha = outcome.files.get(MemberAction.REMOVE, ("", None, ""))
        causes = ExportRun.objects.filter(pk=run.pk).values_list("held_back", flat=True).get()
        finished = ExportRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, attempts=run.attempts).update(
            held_back=with_skipped(causes, outcome.skipped),
            status=RunStatus.SUCCEEDED,
            finished_at=now,
            error="",
            exported_count=outcome.exported,
            skipped_count=outcome.skipped,
            report={"skipped": outcome.skipped_rows, "skipped_total": outcome.skipped},
            file_path=added_path,
            file_size=added_size,
            file_sha256=added_sha,
            removed_file_path=removed_path,
            removed_file_size=removed_size,
            removed_file_sha256=removed_sha,
        )
        if not finished:
            # The watchdog failed this attempt meanwhile (its heartbeat looked dead) and a retry may
            # be running: nothing of this attempt is kept, the run stays as the watchdog left it.
            raise RunSuperseded(f"Attempt {run.attempts} of export run {run.pk} was failed by the watchdog.")


def _insert_snapshot(run: ExportRun, source: QuerySet, *, now) -> None:
    sql, params = source.query.sql_with_params()
    table = connection.ops.quote_name(ExportedMember._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (activation_id, contact_id, exported_at, removal) "
            f"SELECT %s, fresh.cid, %s, fresh.kept FROM ({sql}) fresh",
            [run.activation_id, now, *params],
        )


def _fail(run: ExportRun, exc: Exception, *, cleanup: list[Path]) -> None:
    if isinstance(exc, RunSuperseded):
        # The watchdog already failed this attempt (and cleaned up after it); a retry may own the
        # run's staged rows and file names by now, so this attempt touches nothing more.
        logger.warning("%s", exc)
        return
    for path in cleanup:
        path.unlink(missing_ok=True)
    if connection.connection is not None and not connection.is_usable():
        connection.close()  # e.g. terminated: the next query opens a new one to record the failure
    retry = None
    if isinstance(exc, RunRefused | webhooks.WebhookError):
        message = str(exc)  # for the operator to act on; a webhook has had its own retries
    else:
        logger.exception("Export run %s failed", run.pk)
        message = f"{type(exc).__name__}: {exc}"
        retry = retry_at(run.attempts, now=timezone.now())
    ExportRunMember.objects.filter(run=run).delete()
    ExportRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, attempts=run.attempts).update(
        status=RunStatus.FAILED, finished_at=timezone.now(), error=message, retry_at=retry
    )
