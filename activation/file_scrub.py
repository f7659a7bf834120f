"""Erased persons' rows taken out of the export files crmseg keeps on disk (issue 24 item 6).

An export run leaves its add file and its removal file under MEDIA_ROOT/exports/activation-N/,
and they hold what the destination received: the erased person's rows too. The erasure
(activation/erasure.py) records, per file activation that kept files, the contacts' removal rows
(`ExportFileScrub`: as the snapshot kept them, or made from the contact when the snapshot no
longer has it), and queues `scrub_export_files` to run once it commits; the task rewrites the files
and deletes the record.

A line of a file belongs to an erased person when it agrees with every non-empty cell of that
person's removal row. The removal row is the sent row with the cells a destination does not match
on left blank (activation.formats, `FileFormat.removal`), so this works the same for every
destination kind: hashed identifiers for Meta and Google, the (hashed) email and country for
LinkedIn, the identifying columns of a CSV file, the whole address line of a mailing list. Cells
are compared as the file has them once parsed by the csv module (quoted or not; a leading `'` is
the formula guard both the file and the removal row carry). A removal row with no non-empty cell
identifies no one and removes nothing.

Each file is written next to itself (mode 0600, as exports are) and moved over the old one with
os.replace, so a reader sees the old file or the new one, never half; the run's stored size and
SHA-256 follow. A file left with no rows keeps its header. The rows kept are written back as the
exporter writes rows, which reproduces the lines it wrote byte for byte.

Why a task and not the erasure itself: a 100k-row Meta file (52 MB) took 7.7 s to rewrite on the
shared 2-core machine at load 16-19 (`manage.py bench_file_scrub`), and an activation keeps every
run's files, so the time grows with a history the erasure cannot bound. The task takes no
argument (no personal data, not even an id, travels through the queue); it works through every
pending record, so a run that failed is picked up again by the next one, and by the recurring job
in crmseg_site/schedules.py.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django_q.tasks import async_task

from activation import normalize
from activation.exports import _csv_line, _HashingFile, _private_file
from activation.formats import file_format
from activation.models import Activation, ExportedMember, ExportFileScrub, ExportRun
from contacts.models import Contact

logger = logging.getLogger(__name__)

TASK = "activation.file_scrub.scrub_export_files"
SCHEDULE_NAME = "activation: scrub erased contacts from export files"


def queue_scrub(activation: Activation, contact_ids: list[int], *, before_run: int) -> bool:
    """Inside the erasure: record the contacts' rows to take out of the activation's files of runs
    before `before_run`; False when no row identifies them. `enqueue_scrub` then queues the task.

    A contact in the snapshot is found by the removal row kept there (what the destination
    received); one that left the audience before (its removal sent, its snapshot row gone) by its
    removal row made from the contact as it is now, which finds its lines unless it changed since."""
    kept = ExportedMember.objects.filter(activation=activation, contact_id__in=contact_ids, removal__isnull=False)
    rows = [row for row in kept.values_list("removal", flat=True) if row is not None]
    rows += _rows_now(activation, contact_ids, exclude=kept.values("contact_id"))
    rows = [row for row in rows if any(row)]
    if not rows:
        return False
    ExportFileScrub.objects.create(activation=activation, before_run=before_run, rows=rows)
    return True


def _rows_now(activation: Activation, contact_ids: list[int], *, exclude: QuerySet) -> list[list[str]]:
    fmt = file_format(activation.destination)
    contacts = Contact.objects.filter(pk__in=contact_ids).exclude(pk__in=exclude).only("lifecycle_stage", *fmt.fields)
    if any("__" in name for name in fmt.fields):
        contacts = contacts.select_related("company")
    rows = []
    for contact in contacts.iterator(chunk_size=settings.ACTIVATION_EXPORT_CHUNK_SIZE):
        try:
            rows.append(fmt.removal(fmt.row(contact, activation.destination)))
        except normalize.Unusable:
            continue  # no file could carry it
    return rows


def enqueue_scrub() -> None:
    """Queue scrub_export_files once the current transaction (the erasure) commits."""
    transaction.on_commit(lambda: async_task(TASK, task_name="scrub export files"))


@dataclass
class Scrubbed:
    files: int = 0
    rows: int = 0


def scrub_export_files() -> dict:
    """django-q task: do every pending scrub, one activation at a time; returns what it changed."""
    done = Scrubbed()
    while True:
        with transaction.atomic():
            # Every pending record of one activation, locked (a second worker takes another activation):
            # each file is rewritten once, and never by two workers at a time.
            first = ExportFileScrub.objects.select_for_update(skip_locked=True).order_by("pk").first()
            if first is None:
                break
            pending = ExportFileScrub.objects.filter(activation_id=first.activation_id)
            scrubs = list(pending.select_for_update(skip_locked=True).order_by("pk"))
            _scrub_activation(first.activation_id, scrubs, done)
            ExportFileScrub.objects.filter(pk__in=[scrub.pk for scrub in scrubs]).delete()
    return {"files": done.files, "rows": done.rows}


def _scrub_activation(activation_id: int, scrubs: list[ExportFileScrub], done: Scrubbed) -> None:
    last = max(scrub.before_run for scrub in scrubs)
    runs = ExportRun.objects.filter(activation_id=activation_id, pk__lt=last).exclude(
        file_path="", removed_file_path=""
    )
    for run in runs.order_by("pk"):
        rows = [row for scrub in scrubs if run.pk < scrub.before_run for row in scrub.rows]
        changed: dict[str, object] = {}
        for path_field, prefix in (("file_path", "file_"), ("removed_file_path", "removed_file_")):
            relative = getattr(run, path_field)
            if not relative:
                continue
            result = scrub_file(Path(settings.MEDIA_ROOT) / relative, rows)
            if result is None:
                continue
            size, sha256, removed = result
            changed.update({f"{prefix}size": size, f"{prefix}sha256": sha256})
            done.files += 1
            done.rows += removed
        if changed:
            ExportRun.objects.filter(pk=run.pk).update(**changed)


class RowMatcher:
    """Finds the lines that agree with every non-empty cell of one of `rows`, without comparing each
    line with each row: rows are indexed by their first non-empty cell (column, value)."""

    def __init__(self, rows: Iterable[list[str]]) -> None:
        self.by_first: dict[tuple[int, str], list[list[tuple[int, str]]]] = defaultdict(list)
        for row in rows:
            filled = [(column, cell) for column, cell in enumerate(row) if cell]
            if filled:
                self.by_first[filled[0]].append(filled)
        self.columns = sorted({column for column, _ in self.by_first})

    def matches(self, cells: list[str]) -> bool:
        for column in self.columns:
            if column >= len(cells):
                break
            for filled in self.by_first.get((column, cells[column]), ()):
                if all(at < len(cells) and cells[at] == cell for at, cell in filled):
                    return True
        return False


def scrub_file(path: Path, rows: Iterable[list[str]]) -> tuple[int, str, int] | None:
    """Rewrite the export file at `path` without the lines matching `rows`; returns (size, sha256,
    lines removed), or None when the file is missing or no line matched (the file is left alone)."""
    matcher = RowMatcher(rows)
    if not matcher.columns or not path.exists():
        return None
    temp = path.with_name(path.name + ".scrub")
    removed = 0
    try:
        with path.open(newline="", encoding="utf-8") as source, _private_file(temp) as handle:
            out = _HashingFile(handle)
            reader = csv.reader(source)
            header = next(reader, None)
            if header is not None:
                out.write(_csv_line(header))
            for cells in reader:
                if matcher.matches(cells):
                    removed += 1
                else:
                    out.write(_csv_line(cells))
            handle.flush()
            os.fsync(handle.fileno())
        if not removed:
            temp.unlink()
            return None
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    logger.info("Removed %d erased contact row(s) from %s", removed, path)
    return out.size, out.digest.hexdigest(), removed
