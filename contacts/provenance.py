"""Where a stored contact or company value came from: captured, unless an enrichment filled it.

A record's `enriched_at` lists the values an enrichment import wrote (contacts/enrichment.py), by
field name or `props.<key>` for a custom property, with when: {"job_title": "2026-12-07T08:00:00+00:00"}.
Any other value was captured: typed in the admin, sent through the API, imported as a record. The
coverage report counts the listed values as enriched (segments/coverage.py).

A captured write that changes a listed value makes it captured again: the write path drops its
mark here, whichever door the write came through (`marks_after_capture` for set-based writes,
`forget_overwritten` before a single row's save). A write that sets the mark itself (a merge
taking the other contact's enriched value) keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import FieldDoesNotExist
from django.db import models

from contacts.models import Company, Contact

PROPERTY_PREFIX = "props."


def is_empty(value: object) -> bool:
    """No value to keep: what an enrichment may fill without overwriting anything."""
    return value is None or value == "" or value == [] or value == {}


def changed_paths(stored: dict, written: dict) -> set[str]:
    """The paths (field names, props.<key>) whose value `written` (by column) changes in `stored`."""
    changed = {name for name, value in written.items() if name != "properties" and stored.get(name) != value}
    old, new = stored.get("properties") or {}, written.get("properties")
    if isinstance(new, dict):
        changed |= {f"{PROPERTY_PREFIX}{key}" for key in set(old) | set(new) if old.get(key) != new.get(key)}
    return changed


def marks_after_capture(marks: dict | None, changed: Iterable[str]) -> dict:
    """A record's marks after a captured write changed these paths: their values are captured now."""
    changed = set(changed)
    return {path: at for path, at in (marks or {}).items() if path not in changed}


def forget_overwritten(obj: models.Model) -> list[str]:
    """Before `obj` (a stored contact or company) is saved: drop the marks of the values this save
    changes while leaving their mark as stored (a captured edit). Returns ["enriched_at"] when the
    marks changed (for update_fields), else []. One query, only for a record with marks."""
    if not isinstance(obj, Contact | Company) or obj.pk is None or not obj.enriched_at:
        return []
    names = {"properties" if path.startswith(PROPERTY_PREFIX) else path for path in obj.enriched_at}
    columns = [name for name in sorted(names) if _is_column(type(obj), name)] + ["enriched_at"]
    stored = type(obj)._default_manager.filter(pk=obj.pk).values(*columns).first()
    if stored is None:
        return []
    now = {name: getattr(obj, name) for name in columns if name != "enriched_at"}
    stored_marks = stored.pop("enriched_at") or {}
    captured = {path for path in changed_paths(stored, now) if obj.enriched_at.get(path) == stored_marks.get(path)}
    kept = marks_after_capture(obj.enriched_at, captured)
    if kept == obj.enriched_at:
        return []
    obj.enriched_at = kept
    return ["enriched_at"]


def merged_marks(given_by: dict[str, list[Contact] | list[Company]]) -> dict[str, str]:
    """The marks of a merge's survivor, from {path: the records its kept value came from}: a value
    is enriched when each record giving it had it enriched (with the latest time), else captured."""
    marks = {}
    for path, records in given_by.items():
        if records and all(path in record.enriched_at for record in records):
            marks[path] = max(record.enriched_at[path] for record in records)
    return marks


def _is_column(model: type[models.Model], name: str) -> bool:
    try:
        return model._meta.get_field(name).concrete
    except FieldDoesNotExist:  # a mark naming a field the model no longer has
        return False
