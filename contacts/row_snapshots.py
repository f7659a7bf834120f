"""Rows kept as JSON so that a merge can be undone exactly (contacts/merging.py, contacts/company_merging.py).

cascaded_rows(obj, leave_out=...)   every row deleting `obj` would delete with it, parents first
serialize(rows)                     rows in django.core.serializers' "python" form, as JSON
restore_rows(rows)                  those rows inserted back as they were, ids included
reverse_relations(model)            the foreign keys pointing at `model`
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from datetime import datetime, time

from django.core import serializers
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


def cascaded_rows(obj: models.Model, *, leave_out: Iterable[type[models.Model]] = ()) -> list[models.Model]:
    """Every row deleting `obj` would delete with it, parents before children, one query per related
    table and level; rows of the models in `leave_out` (and what hangs from them) are not collected."""
    skipped = tuple(leave_out)
    found: list[models.Model] = []
    seen: set[tuple[str, object]] = set()
    level: list[tuple[type[models.Model], list]] = [(type(obj), [obj.pk])]
    while level:
        next_level = []
        for model, pks in level:
            for relation in reverse_relations(model):
                related = relation.related_model
                if relation.on_delete is not models.CASCADE or related in skipped:
                    continue
                rows = [
                    row
                    for row in related._default_manager.filter(**{f"{relation.field.name}__in": pks}).order_by("pk")
                    if (related._meta.label, row.pk) not in seen
                ]
                seen.update((related._meta.label, row.pk) for row in rows)
                found += rows
                if rows:
                    next_level.append((related, [row.pk for row in rows]))
        level = next_level
    return found


def reverse_relations(model: type[models.Model]) -> list:
    """The foreign keys pointing at `model`, those without a related name ("+") included."""
    return [
        f for f in model._meta.get_fields(include_hidden=True) if f.auto_created and not f.concrete and f.is_relation
    ]


class _ExactEncoder(DjangoJSONEncoder):
    """Times to the microsecond (Django's encoder keeps milliseconds, as JavaScript does)."""

    def default(self, o: object) -> object:
        if isinstance(o, datetime | time):
            return o.isoformat()
        return super().default(o)


def serialize(rows: Iterable[models.Model]) -> list[dict]:
    """Rows in django.core.serializers' "python" form, as JSON (contacts.writes.restore reads it)."""
    return json.loads(json.dumps(serializers.serialize("python", rows), cls=_ExactEncoder))


def restore_rows(rows: list[dict]) -> None:
    """Insert serialised rows back as they were, ids included, one INSERT per table (parents first,
    as `cascaded_rows` collected them); many-to-many links follow."""
    restored = list(serializers.deserialize("python", rows))
    for model, group in itertools.groupby(restored, key=lambda item: type(item.object)):
        items = list(group)
        model._default_manager.bulk_create([item.object for item in items], batch_size=1000)
        for item in items:
            for name, values in (item.m2m_data or {}).items():
                getattr(item.object, name).set(values)
