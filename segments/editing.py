"""Creating, changing and deleting segments: the checks and bookkeeping every write path shares.

The admin (and the API) call these functions instead of saving a Segment themselves, so a rule
is always validated, references and rule versions stay in step, the dependency graph stays
acyclic and a segment others depend on is never deleted.
"""

from __future__ import annotations

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from segments.graph import dependency_graph, find_cycle
from segments.locks import lock_segment_graph
from segments.models import STATIC_KINDS, RuleVersion, Segment, SegmentReference, SegmentStatus
from segments.rules.validation import RuleError, errors_before_saving, referenced_slugs
from segments.tasks import enqueue_refresh_segment

# What an edit may change; refresh statistics are written by refreshes only, so a form that was
# opened before a refresh never overwrites its figures.
DEFINITION_FIELDS = [
    "name",
    "slug",
    "description",
    "kind",
    "is_global",
    "parent",
    "rule",
    "owner",
    "backup_owner",
    "category",
    "status",
    "requires_approval",
    "rule_edited_at",
    "updated_at",
]
# Written by save_segment itself, never taken from a form.
BOOKKEEPING_FIELDS = ("rule_edited_at", "updated_at")
NEW_NODE = 0  # stands for a segment not saved yet in the dependency graph


class SegmentInUse(ValidationError):
    """Deleting the segment is refused because others depend on it."""

    def __init__(self, segment: Segment, dependants: list[str]) -> None:
        self.dependants = dependants
        super().__init__(
            f"Segment {segment.name!r} ({segment.slug}) cannot be deleted while others depend on it: "
            + "; ".join(dependants)
            + ". Change or delete those first.",
            code="segment_in_use",
        )


class SegmentInvalid(ValidationError):
    """The segment's definition is not acceptable: `field_errors` by field, and the rule's own
    errors by JSON path inside the rule (`rule_errors`, also listed under "rule" as text)."""

    def __init__(self, field_errors: dict[str, list[str]], rule_errors: list[RuleError]) -> None:
        self.field_errors = field_errors
        self.rule_errors = rule_errors
        combined = {name: list(messages) for name, messages in field_errors.items()}
        if rule_errors:
            combined.setdefault("rule", []).extend(str(error) for error in rule_errors)
        super().__init__(combined)


def check_segment(segment: Segment) -> None:
    """Raise SegmentInvalid when the segment's definition is not acceptable. The one validation of
    a segment's rule: the admin form and the API both learn of rule errors from here."""
    errors: dict[str, list[str]] = {}
    try:
        segment.full_clean(validate_constraints=False)
    except ValidationError as error:
        errors.update(error.message_dict)
    for field, message in _definition_errors(segment):
        errors.setdefault(field, []).append(message)
    rule_errors = _rule_errors(segment)
    if not errors and not rule_errors:
        cycle = _cycle(segment)
        if cycle:
            errors[NON_FIELD_ERRORS] = [
                f"This would make a dependency cycle: {cycle}. A segment cannot depend on itself "
                "through parents and in_segment conditions."
            ]
    if errors or rule_errors:
        raise SegmentInvalid(errors, rule_errors)


def _rule_errors(segment: Segment) -> list[RuleError]:
    """The rule checked against the segments stored now (and this one, which may read itself only
    to be told it would make a cycle)."""
    if segment.is_static or not segment.rule:
        return []
    slugs = set(Segment.objects.values_list("slug", flat=True)) | {segment.slug}
    return errors_before_saving(segment.rule, segment_slugs=slugs)


def _definition_errors(segment: Segment) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if segment.is_static:
        kind = "suppression list" if segment.is_suppression else "static segment"
        if segment.rule not in (None, {}):
            errors.append(("rule", f"A {kind} has no rule; its members are added and removed by hand."))
        if segment.parent_id is not None:
            errors.append(("parent", f"A {kind} cannot have a parent; only rule segments nest."))
    elif not segment.rule:
        errors.append(("rule", f"A {segment.get_kind_display().lower()} segment needs a rule."))
    if segment.is_global and not segment.is_suppression:
        errors.append(("is_global", "Only suppression segments can be global."))
    if segment.pk is not None and segment.parent_id == segment.pk:
        errors.append(("parent", "A segment cannot be its own parent."))
    if segment.pk is not None:
        errors.extend(_stored_errors(segment))
    return errors


def _stored_errors(segment: Segment) -> list[tuple[str, str]]:
    """What an existing segment may not change: its kind family, and its slug while rules read it."""
    errors: list[tuple[str, str]] = []
    stored = Segment.objects.filter(pk=segment.pk).values("kind", "slug").first()
    if stored is None:
        return errors
    if (stored["kind"] in STATIC_KINDS) != segment.is_static:
        errors.append(("kind", "A segment cannot switch between static and rule-based; create a new one."))
    if stored["slug"] != segment.slug:
        readers = Segment.objects.filter(outgoing_references__to_segment=segment.pk).order_by("slug")
        names = ", ".join(reader.slug for reader in readers)
        if names:
            errors.append(("slug", f"The rules of {names} read this segment as {stored['slug']!r}; change them first."))
    return errors


def _cycle(segment: Segment) -> str | None:
    """The dependency cycle the segment would close, spelled 'a -> b -> a', or None."""
    graph = dependency_graph()
    node = segment.pk or NEW_NODE
    slugs = referenced_slugs(segment.rule) if segment.is_rule_based else set()
    ids = {slug: pk for pk, slug in Segment.objects.filter(slug__in=slugs).values_list("pk", "slug")}
    ids.update({segment.slug: node} if segment.slug in slugs else {})
    graph[node] = {ids[slug] for slug in slugs if slug in ids}
    if segment.parent_id is not None:
        graph[node].add(segment.parent_id)
    path = find_cycle(graph, node)
    if path is None:
        return None
    names = dict(Segment.objects.filter(pk__in=path).values_list("pk", "slug"))
    names[node] = segment.slug
    return " -> ".join(names[pk] for pk in path)


def save_segment(segment: Segment, *, user=None, note: str = "", approved_by=None) -> Segment:
    """Validate and save a new or changed segment; record the rule version (with the author's
    `note` and the size it had); queue a refresh, which records the size after."""
    with transaction.atomic():
        lock_segment_graph()
        check_segment(segment)
        old = Segment.objects.select_for_update().filter(pk=segment.pk).first() if segment.pk else None
        rule_changed = segment.rule != (old.rule if old else None)
        redefined = old is not None and (rule_changed or old.parent_id != segment.parent_id)
        if redefined and old is not None and old.last_refresh_started_at is not None:
            segment.rule_edited_at = timezone.now()
        if old is None:
            segment.save()
        else:
            segment.save(update_fields=DEFINITION_FIELDS)
        _sync_references(segment)
        if rule_changed:
            RuleVersion.objects.create(
                segment=segment,
                old_rule=old.rule if old else None,
                new_rule=segment.rule,
                changed_by=user,
                note=note,
                size_before=old.size if old else 0,
                approved_by=approved_by,
            )
        reactivated = old is not None and old.status != SegmentStatus.ACTIVE
        if (
            segment.is_rule_based
            and segment.status == SegmentStatus.ACTIVE
            and (old is None or redefined or reactivated)
        ):
            enqueue_refresh_segment(segment.pk)
    return segment


def _sync_references(segment: Segment) -> None:
    slugs = referenced_slugs(segment.rule) if segment.is_rule_based else set()
    wanted = set(Segment.objects.filter(slug__in=slugs).values_list("pk", flat=True))
    current = set(segment.outgoing_references.values_list("to_segment_id", flat=True))
    if current - wanted:
        segment.outgoing_references.filter(to_segment_id__in=current - wanted).delete()
    SegmentReference.objects.bulk_create(
        [SegmentReference(from_segment=segment, to_segment_id=pk) for pk in sorted(wanted - current)]
    )


def segment_dependants(segment: Segment) -> list[str]:
    """Who depends on the segment, as a user would name them."""
    children = [f"child segment {s.name} ({s.slug})" for s in segment.children.order_by("slug")]
    readers = Segment.objects.filter(outgoing_references__to_segment=segment).order_by("slug")
    return children + [f"segment {s.name} ({s.slug}) reads it with in_segment" for s in readers]


def delete_segment(segment: Segment) -> None:
    """Delete a segment nothing depends on; raise SegmentInUse listing the dependants otherwise."""
    try:
        with transaction.atomic():
            lock_segment_graph()
            dependants = segment_dependants(segment)
            if dependants:
                raise SegmentInUse(segment, dependants)
            segment.delete()
    except ProtectedError as error:
        named = sorted(f"{obj._meta.verbose_name} {obj}" for obj in error.protected_objects)
        raise SegmentInUse(segment, named) from None
