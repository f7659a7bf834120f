"""What uses a segment from outside the segments app: activations, automations, campaign variants,
experiments and whatever else declares a relation towards Segment.

Found through the relations other apps declare (Segment._meta.related_objects), so this module
imports none of them and a new kind of user (an experiment) counts without a change here. One
query per relation for any number of segments.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, ForeignObjectRel, Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from segments.models import Segment


@dataclass(frozen=True)
class Use:
    what: str  # "Activation (segment)", "Automation (suppression segments)"
    name: str
    url: str | None


def relations() -> list[ForeignObjectRel]:
    """Relations from models of other apps towards Segment (ForeignKeys and ManyToManyFields)."""
    return [
        relation
        for relation in Segment._meta.related_objects
        if relation.related_model._meta.app_label != "segments" and relation.remote_field is not None
    ]


def describe(relation: ForeignObjectRel) -> str:
    return f"{str(relation.related_model._meta.verbose_name).capitalize()} ({relation.field.verbose_name})"


def use_counts(segment_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """segment id -> {what: how many} for the segments that are used at all."""
    ids = list(segment_ids)
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for relation in relations():
        name = relation.field.name
        rows = (
            relation.related_model._default_manager.filter(**{f"{name}__in": ids})
            .order_by()
            .values_list(name)
            .annotate(n=Count("pk", distinct=True))
        )
        for segment_id, n in rows:
            counts[segment_id][describe(relation)] = n
    return dict(counts)


def _admin_url(obj) -> str | None:
    try:
        return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return None


def uses(segment_ids: Iterable[int], *, per_relation: int = 50) -> dict[int, list[Use]]:
    """segment id -> the objects that use it (at most `per_relation` of each kind per segment)."""
    ids = list(segment_ids)
    found: dict[int, list[Use]] = defaultdict(list)
    for relation in relations():
        name, what = relation.field.name, describe(relation)
        seen: dict[int, int] = defaultdict(int)
        queryset = relation.related_model._default_manager.filter(**{f"{name}__in": ids})
        for obj, segment_id in _with_segment(queryset, name):
            if seen[segment_id] < per_relation:
                seen[segment_id] += 1
                found[segment_id].append(Use(what, str(obj), _admin_url(obj)))
    return dict(found)


def _with_segment(queryset, name: str):
    """(object, segment id) pairs, objects fetched once; a ManyToMany object once per segment."""
    pairs = list(queryset.order_by("pk").values_list("pk", name))
    objects = queryset.model._default_manager.in_bulk({pk for pk, _ in pairs})
    return [(objects[pk], segment_id) for pk, segment_id in pairs if pk in objects]


# An API read is recorded at most once an hour per segment: a conditional UPDATE that finds
# nothing to do when the stored time is recent, so a busy integration costs one cheap statement.
API_READ_RESOLUTION = timedelta(hours=1)


def record_api_read(segment_id: int, *, now: datetime | None = None) -> None:
    now = now or timezone.now()
    stale = Q(last_api_read_at__isnull=True) | Q(last_api_read_at__lt=now - API_READ_RESOLUTION)
    Segment.objects.filter(stale, pk=segment_id).update(last_api_read_at=now)


def enabled_users(segment_ids: Iterable[int]) -> set[int]:
    """The segments among these that an enabled activation or automation (any relation towards
    Segment from a model with an `enabled` flag) reads, one query per such relation."""
    ids = list(segment_ids)
    found: set[int] = set()
    for relation in relations():
        model, name = relation.related_model, relation.field.name
        if not any(field.name == "enabled" for field in model._meta.get_fields()):
            continue
        rows = model._default_manager.filter(**{f"{name}__in": ids}, enabled=True).values_list(name, flat=True)
        found.update(rows.distinct())
    return found


# -- last used ----------------------------------------------------------------------------------
# When a segment was last used from outside: its last export, the last member change an automation
# acted on, its last API read. Segments knows only the API reads (on the segment row); activation
# registers how to read its exports and automations (ActivationConfig.ready), one or two grouped
# statements for any number of segments.


@dataclass(frozen=True)
class LastUse:
    at: datetime
    what: str  # "export", "automation", "API read"


LastUseSource = Callable[[list[int]], dict[int, LastUse]]
_last_use_sources: list[LastUseSource] = []


def add_last_use_source(source: LastUseSource) -> None:
    if source not in _last_use_sources:
        _last_use_sources.append(source)


def last_used(segments: Iterable[Segment]) -> dict[int, LastUse]:
    """segment id -> its latest use, for the segments used at all (the segments need last_api_read_at)."""
    segments = list(segments)
    found = {s.pk: LastUse(s.last_api_read_at, "API read") for s in segments if s.last_api_read_at is not None}
    ids = [s.pk for s in segments]
    for source in _last_use_sources:
        for segment_id, use in source(ids).items():
            if segment_id not in found or use.at > found[segment_id].at:
                found[segment_id] = use
    return found
