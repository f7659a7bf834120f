"""The criteria coverage report: is the data there for the criteria segments are built on?

For every criterion of the plan (contacts.Criterion) and every field a live segment's rule reads,
it says how many contacts have a value (the registry's own "is set", the one rules use), how many
distinct values there are, the source (captured, enriched, derived: the field's own, and how many
of its values an enrichment import filled, read from each record's `enriched_at` as
contacts/provenance.py keeps it) and when a value last changed;
which segments' rules read the field, how full it is among their members, and how many contacts
in each segment's scope (its parent's members, or everyone) the rule cannot classify for lack of
the value. A criterion is **exists** when its best field is filled for COVERAGE_EXISTS_PERCENT of
contacts, **needs enrichment** when sparser, **needs creation** when no field or declared
property carries it.

Two statements whatever the number of fields: one pass over the contacts for every field's
count, distinct values and freshness; one pass over the members of the segments that read
fields (and of their parents), grouped by segment, with a count per field. `top_values(path)` is
one more for one field, on request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Aggregate, Count, F, Max, Q

from contacts.models import Contact, Criterion, PropertyDefinition, PropertySource
from segments.governance.health import fields_read
from segments.models import Segment, SegmentStatus
from segments.rules.compiler import set_condition, value_expression
from segments.rules.registry import Field, get_fields

EXISTS, NEEDS_ENRICHMENT, NEEDS_CREATION = "exists", "needs enrichment", "needs creation"


@dataclass
class Reading:
    """One segment whose rule reads a field: its members with and without the value, and the
    contacts of its scope the rule cannot classify (the value missing)."""

    segment_id: int
    name: str
    members: int
    members_filled: int
    unclassified: int

    @property
    def members_percent(self) -> float | None:
        return round(100 * self.members_filled / self.members, 1) if self.members else None


@dataclass
class FieldCoverage:
    path: str
    label: str
    layer: str
    source: str
    total: int
    filled: int
    distinct: int | None
    freshest: datetime | None
    enriched: int = 0  # of the filled values, those an enrichment import wrote
    readers: list[Reading] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return round(100 * self.filled / self.total, 1) if self.total else 0.0

    @property
    def sources(self) -> str:
        """Where the values came from: the field's source, enriched when an enrichment filled them
        all, the field's source and the enriched share when mixed ("captured, 40% enriched")."""
        if not self.enriched:
            return self.source
        if self.enriched >= self.filled:
            return PropertySource.ENRICHED
        return f"{self.source}, {round(100 * self.enriched / self.filled)}% {PropertySource.ENRICHED}"


@dataclass
class CriterionCoverage:
    name: str
    layer: str
    status: str
    fields: list[FieldCoverage]
    unknown_paths: list[str]
    suggested_property: str

    @property
    def percent(self) -> float | None:
        return max((f.percent for f in self.fields), default=None)


@dataclass
class Report:
    total: int
    criteria: list[CriterionCoverage]
    other_fields: list[FieldCoverage]  # read by rules, in no criterion
    exists_percent: int


def coverage_report() -> Report:
    """The report over every criterion and every field the active rule-based segments read."""
    registry = get_fields()
    segments = list(Segment.objects.rule_based().filter(status=SegmentStatus.ACTIVE).order_by("name"))
    reads = {s.pk: fields_read(s.rule) & registry.keys() for s in segments}
    criteria = list(Criterion.objects.all())
    paths = sorted(set().union(*reads.values(), *(c.fields for c in criteria)) & registry.keys())
    total, overall = _overall([registry[p] for p in paths])
    by_segment = _among_members(segments, reads, registry)
    sources = dict(PropertyDefinition.objects.values_list("key", "source"))
    coverage = {}
    for path in paths:
        filled, distinct, freshest, enriched = overall[path]
        coverage[path] = FieldCoverage(
            path, registry[path].label, registry[path].layer, _source(registry[path], sources), total, filled,
            distinct, freshest, enriched,
        )  # fmt: skip
    for segment in segments:
        scope_total, scope_filled = (total, None) if segment.parent_id is None else by_segment[segment.parent_id]
        members, filled_by_path = by_segment[segment.pk]
        for path in sorted(reads[segment.pk]):
            in_scope = coverage[path].filled if scope_filled is None else scope_filled[path]
            coverage[path].readers.append(
                Reading(segment.pk, segment.name, members, filled_by_path[path], scope_total - in_scope)
            )
    limit = settings.COVERAGE_EXISTS_PERCENT
    rows = [_criterion(c, coverage, limit) for c in criteria]
    in_criteria = {p for c in criteria for p in c.fields}
    other = [coverage[p] for p in paths if p not in in_criteria and coverage[p].readers]
    return Report(total, rows, other, limit)


def top_values(path: str, *, limit: int = 10) -> list[tuple[object, int]]:
    """The field's most common values with their counts (tag lists: not offered)."""
    registry = get_fields()
    if path not in registry:
        raise KeyError(f"{path!r} is not a field rules can read.")
    found = registry[path]
    if found.type == "tags":
        return []
    expression = value_expression(found)
    rows = (
        Contact.objects.annotate(value=expression)
        .filter(set_condition(found, expression))
        .values("value")
        .annotate(n=Count("pk"))
        .order_by("-n", "value")[:limit]
    )
    return [(row["value"], row["n"]) for row in rows]


def _criterion(criterion: Criterion, coverage: dict[str, FieldCoverage], limit: int) -> CriterionCoverage:
    known = [coverage[p] for p in criterion.fields if p in coverage]
    unknown = [p for p in criterion.fields if p not in coverage]
    best = max((f.percent for f in known), default=None)
    status = NEEDS_CREATION if best is None else EXISTS if best >= limit else NEEDS_ENRICHMENT
    return CriterionCoverage(criterion.name, criterion.layer, status, known, unknown, criterion.suggested_property)


def _source(found: Field, sources: dict[str, str]) -> str:
    if found.property_key:
        return sources.get(found.property_key, PropertySource.CAPTURED)
    if found.path.startswith("metrics."):
        return PropertySource.DERIVED
    return PropertySource.CAPTURED


def _freshness(found: Field) -> F:
    """When the row holding the field last changed."""
    if found.path.startswith("metrics."):
        return F("metrics__as_of")
    if found.path.startswith("company."):
        return F("company__updated_at")
    return F("updated_at")


def _enriched(found: Field) -> Q | None:
    """The contacts whose value of the field an enrichment import wrote (contacts/provenance.py)."""
    if found.property_key:
        return Q(enriched_at__has_key=f"props.{found.property_key}")
    if found.path.startswith("company."):
        return Q(company__enriched_at__has_key=found.path.removeprefix("company."))
    if "." in found.path:
        return None  # metrics and owner fields: never enriched
    return Q(enriched_at__has_key=found.path)


def _overall(fields: list[Field]) -> tuple[int, dict[str, tuple[int, int | None, datetime | None, int]]]:
    """One pass over the contacts: (contacts, {path: (filled, distinct values, freshest, enriched)})."""
    aggregates: dict[str, Aggregate] = {"total": Count("pk")}
    for i, found in enumerate(fields):
        expression = value_expression(found)
        present = set_condition(found, expression)
        aggregates[f"f{i}"] = Count("pk", filter=present)
        if found.type != "tags":
            aggregates[f"d{i}"] = Count(expression, distinct=True, filter=present)
        if not found.score:  # propensity scores: their model's page says when they were scored
            aggregates[f"t{i}"] = Max(_freshness(found), filter=present)
        if (enriched := _enriched(found)) is not None:
            aggregates[f"e{i}"] = Count("pk", filter=present & enriched)
    row = Contact.objects.aggregate(**aggregates)
    return row["total"], {
        found.path: (row[f"f{i}"], row.get(f"d{i}"), row.get(f"t{i}"), row.get(f"e{i}") or 0)
        for i, found in enumerate(fields)
    }


def _among_members(
    segments: list[Segment], reads: dict[int, set[str]], registry: dict[str, Field]
) -> dict[int, tuple[int, dict[str, int]]]:
    """One pass over the members of the reading segments and their parents, grouped by segment:
    {segment id: (members, {path: members with a value})}."""
    ids = {s.pk for s in segments if reads[s.pk]} | {s.parent_id for s in segments if reads[s.pk] and s.parent_id}
    paths = sorted(set().union(*reads.values())) if reads else []
    empty = {pk: (0, dict.fromkeys(paths, 0)) for pk in {s.pk for s in segments} | ids}
    if not ids:
        return empty
    counts = {
        f"f{i}": Count("pk", filter=set_condition(registry[p], value_expression(registry[p])))
        for i, p in enumerate(paths)
    }
    rows = (
        Contact.objects.filter(memberships__segment_id__in=sorted(ids))
        .values("memberships__segment_id")
        .annotate(members=Count("pk"), **counts)
        .order_by()
    )
    for row in rows:
        empty[row["memberships__segment_id"]] = (
            row["members"],
            # The counts are the **counts annotations above, which the stubs' plugin does not see.
            {p: row[f"f{i}"] for i, p in enumerate(paths)},  # type: ignore[literal-required]
        )
    return empty
