"""Static segments: members added and removed by hand, each change recorded with reason manual and
the user who made it (segments/membership.py writes them).

Refreshes never touch static segments, so hand-made membership stays until a hand removes it.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser

from segments.membership import edit_members
from segments.models import Segment, SegmentKind


class NotStatic(ValueError):
    pass


def add_static_members(segment: Segment, contact_ids: Iterable[int], *, user: AbstractBaseUser | None = None) -> int:
    """Add these contacts (those that exist and are not members yet); returns how many joined."""
    _check_static(segment)
    return edit_members(segment, add=set(contact_ids), actor=user).added


def remove_static_members(segment: Segment, contact_ids: Iterable[int], *, user: AbstractBaseUser | None = None) -> int:
    """Remove these contacts where they are members; returns how many left."""
    _check_static(segment)
    return edit_members(segment, remove=set(contact_ids), actor=user).removed


def _check_static(segment: Segment) -> None:
    if segment.kind != SegmentKind.STATIC:
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
