"""Static segments: members added and removed by hand, each change recorded with reason manual and
the user who made it (segments/membership.py writes them).

Two kinds are static: a static list, and a suppression list (an opt-out or legal-hold list whose
members activations and automations always leave out). Refreshes never touch them, so hand-made
membership stays until a hand removes it.

Contacts come by id, as a queryset of any size (a filtered contact list: one statement, no id read
into Python), or as e-mails and ids typed or uploaded (`read_member_tokens`, `resolve_contacts`).
A selection over INLINE_MAX contacts is applied in the background (`start_list_edit`): kept as it
was when asked for, then written batch by batch by a django-q task that records its progress.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_q.tasks import async_task

from contacts.models import Contact, normalize_email
from segments.membership import edit_members
from segments.models import ListEdit, ListEditContact, ListEditOperation, ListEditStatus, Segment, SegmentKind

# Selections up to this size are written while the request waits (one statement); larger ones go
# to a task with progress.
INLINE_MAX = 5_000
# Contacts per statement in the task: about a second's work on a loaded machine.
BATCH = 20_000
# Typed or uploaded e-mails and ids at a time.
MAX_TOKENS = 100_000
_LOOKUP_CHUNK = 5_000  # e-mails per IN (...): under SQLite's variable limit
_SHOWN = 20


class NotStatic(ValueError):
    pass


def add_static_members(
    segment: Segment, contacts: Iterable[int] | QuerySet[Contact], *, user: User | None = None
) -> int:
    """Add these contacts (those that exist and are not members yet); returns how many joined."""
    check_static(segment)
    return edit_members(segment, add=_selection(contacts), actor=user).added


def remove_static_members(
    segment: Segment, contacts: Iterable[int] | QuerySet[Contact], *, user: User | None = None
) -> int:
    """Remove these contacts where they are members; returns how many left."""
    check_static(segment)
    return edit_members(segment, remove=_selection(contacts), actor=user).removed


def _selection(contacts: Iterable[int] | QuerySet[Contact]) -> set[int] | QuerySet[Contact]:
    return contacts if isinstance(contacts, QuerySet) else {int(pk) for pk in contacts}


def check_static(segment: Segment) -> None:
    if not segment.is_static:
        raise NotStatic(f"{segment.name} is a {segment.get_kind_display().lower()} segment; its rule decides members.")


def add_imported_contacts(import_id: int, name: str, contact_ids: list[int]) -> int:
    """contacts.changes import listener: keep a file import's contacts in its own static segment
    ("Imported <file> <date>", made by the import's first batch); returns the segment's id."""
    segment, _ = Segment.objects.get_or_create(
        slug=f"imported-{import_id}",
        defaults={"name": name[:200], "kind": SegmentKind.STATIC, "description": "Contacts of a file import"},
    )
    add_static_members(segment, contact_ids)
    return segment.pk


# -- a selection from the contact list ----------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """What `apply_selection` did: written now (`changed`), or queued as `edit`."""

    selected: int
    changed: int | None = None
    edit: ListEdit | None = None

    def message(self, segment: Segment, operation: str) -> str:
        if self.edit is not None:
            verb = "Adding" if operation == ListEditOperation.ADD else "Removing"
            return (
                f"{verb} {self.selected:,} contacts {'to' if operation == ListEditOperation.ADD else 'from'} "
                f"{segment.name} in the background; the list's members page shows the progress."
            )
        unchanged = self.selected - (self.changed or 0)
        if operation == ListEditOperation.ADD:
            return f"Added {self.changed:,} contact(s) to {segment.name}; {unchanged:,} already were members."
        return f"Removed {self.changed:,} contact(s) from {segment.name}; {unchanged:,} were not members."


def apply_selection(
    segment: Segment, contacts: QuerySet[Contact], *, operation: str, user: User | None, source: str
) -> Applied:
    """Add (or remove) every contact of `contacts` to the static list `segment`: at once when they
    are at most INLINE_MAX, else in the background. A selection of nobody is refused (ValueError)."""
    check_static(segment)
    if operation not in ListEditOperation.values:
        raise ValueError(f"unknown operation {operation!r}; expected one of {ListEditOperation.values}")
    contacts = contacts.order_by()
    selected = contacts.values("pk")[: INLINE_MAX + 1].count()
    if not selected:
        raise ValueError("No contacts are selected: nothing was changed.")
    if selected <= INLINE_MAX:
        apply = add_static_members if operation == ListEditOperation.ADD else remove_static_members
        return Applied(selected, changed=apply(segment, contacts, user=user))
    edit = start_list_edit(segment, contacts, operation=operation, user=user, source=source)
    return Applied(edit.total, edit=edit)


def start_list_edit(
    segment: Segment, contacts: QuerySet[Contact], *, operation: str, user: User | None, source: str
) -> ListEdit:
    """Keep the selection as it is now (one INSERT ... SELECT) and queue the task that applies it."""
    check_static(segment)
    sql, params = contacts.order_by().values("pk").query.sql_with_params()
    # Each selected contact once, however the selection's joins repeat it.
    insert = (
        f"INSERT INTO {ListEditContact._meta.db_table} (edit_id, contact_id) "
        f"SELECT %s, c.id FROM {Contact._meta.db_table} c WHERE c.id IN ({sql})"
    )
    with transaction.atomic():
        edit = ListEdit.objects.create(
            segment=segment, operation=operation, requested_by=user, source=source[:500], total=0
        )
        with connection.cursor() as cursor:
            cursor.execute(insert, [edit.pk, *params])
            edit.total = cursor.rowcount
        edit.save(update_fields=["total"])
        transaction.on_commit(lambda: async_task("segments.tasks.list_edit_task", edit.pk, group="list-edit"))
    return edit


def run_list_edit(edit_id: int) -> str:
    """Apply a queued ListEdit batch by batch, recording progress after each; a redelivered task
    finds it claimed and stops. A batch is one statement (the selection's rows in a contact-id range)."""
    claimed = ListEdit.objects.filter(pk=edit_id, status=ListEditStatus.QUEUED).update(
        status=ListEditStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return f"list edit {edit_id}: not queued (another worker got there first, or it is gone)"
    edit = ListEdit.objects.select_related("segment", "requested_by").get(pk=edit_id)
    rows = ListEditContact.objects.filter(edit_id=edit_id).order_by("contact_id")
    last = 0
    try:
        while True:
            bounds = list(rows.filter(contact_id__gt=last).values_list("contact_id", flat=True)[BATCH - 1 : BATCH])
            batch = rows.filter(contact_id__gt=last)
            if bounds:
                batch = batch.filter(contact_id__lte=bounds[0])
            selection = Contact.objects.filter(pk__in=batch.values("contact_id"))
            if edit.operation == ListEditOperation.ADD:
                edit.added += add_static_members(edit.segment, selection, user=edit.requested_by)
            else:
                edit.removed += remove_static_members(edit.segment, selection, user=edit.requested_by)
            edit.done = edit.done + BATCH if bounds else edit.total  # a batch with a bound holds BATCH rows
            edit.save(update_fields=["added", "removed", "done"])
            if not bounds:
                break
            last = bounds[0]
    except Exception as exc:  # recorded on the row for the admin; the task's result says it too
        ListEdit.objects.filter(pk=edit_id).update(
            status=ListEditStatus.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        raise
    ListEditContact.objects.filter(edit_id=edit_id).delete()
    ListEdit.objects.filter(pk=edit_id).update(status=ListEditStatus.DONE, finished_at=timezone.now())
    return f"list edit {edit_id}: {edit.added} added, {edit.removed} removed of {edit.total}"


def retry_list_edit(edit_id: int) -> ListEdit:
    """Queue a failed ListEdit again. Its selection was kept, and adding or removing a contact twice
    changes nothing, so the task goes over the whole selection again: `done` restarts from 0 while
    `added` and `removed` keep counting what was changed. Refuses (ValueError) an edit that did not fail."""
    with transaction.atomic():
        edit = ListEdit.objects.select_for_update().select_related("segment").get(pk=edit_id)
        if edit.status != ListEditStatus.FAILED:
            raise ValueError(f"Only a failed change can be retried; this one is {edit.get_status_display().lower()}.")
        edit.status, edit.error, edit.done, edit.started_at, edit.finished_at = ListEditStatus.QUEUED, "", 0, None, None
        edit.save(update_fields=["status", "error", "done", "started_at", "finished_at"])
        transaction.on_commit(lambda: async_task("segments.tasks.list_edit_task", edit.pk, group="list-edit"))
    return edit


# -- e-mails and ids, typed or uploaded ----------------------------------------------------------

_HEADERS = {"email", "e-mail", "email address", "e-mail address", "id", "contact id", "contact_id"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def split_tokens(text: str) -> list[str]:
    """E-mails and ids typed in a box, separated by commas, semicolons, spaces or new lines."""
    return [t for t in re.split(r"[\s,;]+", text) if t]


def read_member_file(data: bytes) -> list[str]:
    """The e-mails and ids of an uploaded CSV: one per row, in the column headed email or id (or the
    first column); an optional header row. Malformed rows are refused with their row numbers."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValidationError(f"The file is not UTF-8 text (byte {error.start}); save it as CSV UTF-8.") from error
    rows = list(csv.reader(io.StringIO(text)))
    column = 0
    start = 0
    if rows:
        header = [cell.strip().lower() for cell in rows[0]]
        if any(cell in _HEADERS for cell in header):
            column = next(i for i, cell in enumerate(header) if cell in _HEADERS)
            start = 1
    tokens, bad = [], []
    for number, row in enumerate(rows[start:], start=start + 1):
        value = row[column].strip() if len(row) > column else ""
        if not value and not any(cell.strip() for cell in row):
            continue  # a blank line
        if value.isdigit() or _EMAIL.match(value):
            tokens.append(value)
        else:
            bad.append(f"row {number}: {value}" if value else f"row {number}: empty")
    if bad:
        shown = "; ".join(bad[:_SHOWN]) + (f"; and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else "")
        raise ValidationError(
            f"{len(bad)} row(s) are neither an e-mail address nor a contact id: {shown}. Nothing was changed."
        )
    if not tokens:
        raise ValidationError("The file holds no e-mail addresses or contact ids.")
    return tokens


def resolve_contacts(tokens: list[str]) -> list[int]:
    """The ids of the contacts these e-mails and ids name; any unknown one is refused, listed back."""
    if len(tokens) > MAX_TOKENS:
        raise ValidationError(f"At most {MAX_TOKENS:,} contacts at a time; got {len(tokens):,}.")
    ids = {int(t) for t in tokens if t.isdigit()}
    emails = sorted({normalize_email(t) for t in tokens if not t.isdigit()})
    found_ids: set[int] = set()
    ordered_ids = sorted(ids)
    for start in range(0, len(ordered_ids), _LOOKUP_CHUNK):
        id_chunk = ordered_ids[start : start + _LOOKUP_CHUNK]
        found_ids.update(Contact.objects.filter(pk__in=id_chunk).values_list("pk", flat=True))
    by_email: dict[str, int] = {}
    for start in range(0, len(emails), _LOOKUP_CHUNK):
        chunk = emails[start : start + _LOOKUP_CHUNK]
        by_email.update(Contact.objects.filter(email__in=chunk).values_list("email", "pk"))
    unknown = [t for t in tokens if (int(t) not in found_ids if t.isdigit() else normalize_email(t) not in by_email)]
    if unknown:
        shown = ", ".join(unknown[:_SHOWN]) + (f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else "")
        raise ValidationError(f"No contact with these emails or ids: {shown}. Nothing was changed.")
    return sorted(found_ids | set(by_email.values()))
