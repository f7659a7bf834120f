"""Static segments: members added and removed by hand, each change recorded with reason manual.

Refreshes never touch static segments, so hand-made membership stays until a hand removes it.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from contacts.models import Contact
from segments.diffing import CHANGE, MEMBERSHIP
from segments.events import memberships_changed
from segments.locks import lock_segment
from segments.models import ChangeKind, ChangeReason, Membership, Segment, SegmentKind
from segments.rollup import count_changes

CHUNK = 2000


class NotStatic(ValueError):
    pass


def add_static_members(segment: Segment, contact_ids: Iterable[int], *, user=None) -> int:
    """Add these contacts (those that exist and are not members yet); returns how many joined."""
    return _change(segment, contact_ids, kind=ChangeKind.JOIN, user=user)


def remove_static_members(segment: Segment, contact_ids: Iterable[int], *, user=None) -> int:
    """Remove these contacts where they are members; returns how many left."""
    return _change(segment, contact_ids, kind=ChangeKind.LEAVE, user=user)


def _change(segment: Segment, contact_ids: Iterable[int], *, kind: str, user) -> int:
    if segment.kind != SegmentKind.STATIC:
        raise NotStatic(f"{segment.name} is a {segment.get_kind_display().lower()} segment; its rule decides members.")
    ids = sorted({int(pk) for pk in contact_ids})
    changed = 0
    with transaction.atomic():
        lock_segment(segment.pk)
        for start in range(0, len(ids), CHUNK):
            changed += _apply(segment, ids[start : start + CHUNK], kind=kind, user=user)
        if changed:
            delta = changed if kind == ChangeKind.JOIN else -changed
            Segment.objects.filter(pk=segment.pk).update(size=F("size") + delta)
            joins, leaves = (changed, 0) if kind == ChangeKind.JOIN else (0, changed)
            count_changes(segment.pk, changed_at=timezone.now(), joins=joins, leaves=leaves)
            memberships_changed([segment.pk])  # listeners (automations) run after this commits
    return changed


def _apply(segment: Segment, ids: list[int], *, kind: str, user) -> int:
    """History rows for the contacts that really change, then the membership rows from them."""
    members = Membership.objects.filter(segment=segment).values("contact_id")
    candidates = Contact.objects.filter(pk__in=ids)
    candidates = candidates.exclude(pk__in=members) if kind == ChangeKind.JOIN else candidates.filter(pk__in=members)
    sql, params = candidates.order_by().values("pk").query.sql_with_params()
    stamp = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {CHANGE} (segment_id, contact_id, kind, reason, changed_at, changed_by_id)
            WITH c(id) AS ({sql}) SELECT %s, c.id, %s, %s, %s, %s FROM c""",
            [*params, segment.pk, kind, ChangeReason.MANUAL, stamp, user.pk if user else None],
        )
        if not cursor.rowcount:
            return 0
        recorded = f"SELECT contact_id FROM {CHANGE} WHERE segment_id = %s AND changed_at = %s AND kind = %s"
        if kind == ChangeKind.JOIN:
            cursor.execute(
                f"INSERT INTO {MEMBERSHIP} (segment_id, contact_id, joined_at) "
                f"SELECT %s, contact_id, %s FROM ({recorded}) r",
                [segment.pk, stamp, segment.pk, stamp, kind],
            )
        else:
            cursor.execute(
                f"DELETE FROM {MEMBERSHIP} WHERE segment_id = %s AND contact_id IN ({recorded})",
                [segment.pk, segment.pk, stamp, kind],
            )
        return cursor.rowcount
