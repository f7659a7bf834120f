"""What Operations see about one segment, and the overview of all of them.

Every figure is read set-based: one query on the daily rollup (SegmentDay) for both charts, one query
for the whole segment tree, one query per relation that points at segments for "where used".
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import django_filters
from django.db.models import Q, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from contacts.models import LifecycleStage
from segments.governance.usage import LastUse
from segments.models import Membership, Segment, SegmentDay, SegmentReference
from segments.rollup import days_since


@dataclass(frozen=True)
class History:
    days: list[date]
    sizes: list[int]
    joins: list[int]
    leaves: list[int]

    @property
    def growth(self) -> dict[int, int]:
        """Net change over the last 7 and 30 days."""
        return {span: self.sizes[-1] - self.sizes[max(0, len(self.sizes) - 1 - span)] for span in (7, 30)}


def history_from(size: int, days: dict[date, SegmentDay], *, today: date, span: int) -> History:
    """The last `span` days ending today, from the rollup rows of one segment.

    A day with a row ends at its recorded size; a day without one ends where the next day began
    (that day's size - joins + leaves), walking back from the segment's size now.
    """
    calendar = [today - timedelta(days=offset) for offset in range(span - 1, -1, -1)]
    sizes, running = [], size
    for day in reversed(calendar):
        row = days.get(day)
        if row is not None:
            running = row.size
        sizes.append(running)
        if row is not None:
            running = running - row.joins + row.leaves
    sizes.reverse()
    return History(
        days=calendar,
        sizes=sizes,
        joins=[days[day].joins if day in days else 0 for day in calendar],
        leaves=[days[day].leaves if day in days else 0 for day in calendar],
    )


def segment_histories(segments: list[Segment], *, now: datetime, span: int) -> dict[int, History]:
    """Each segment's history over the last `span` days, from one query on the daily rollup."""
    today = timezone.localdate(now)
    days = days_since([s.pk for s in segments], first_day=today - timedelta(days=span - 1))
    return {s.pk: history_from(s.size, days[s.pk], today=today, span=span) for s in segments}


def segment_history(segment: Segment, *, now: datetime, span: int = 60) -> History:
    return segment_histories([segment], now=now, span=span)[segment.pk]


@dataclass
class TreeNode:
    segment: Segment
    depth: int = 0
    children: list["TreeNode"] = field(default_factory=list)
    growth: dict[int, int] = field(default_factory=dict)  # days -> members gained (the overview's columns)
    last_used: LastUse | None = None


def segment_tree(segments: list[Segment]) -> list[TreeNode]:
    """Roots with their descendants, from one list of segments (children sorted by name)."""
    nodes = {s.pk: TreeNode(s) for s in segments}
    roots: list[TreeNode] = []
    for node in nodes.values():
        parent = nodes.get(node.segment.parent_id) if node.segment.parent_id else None
        (parent.children if parent else roots).append(node)
    return roots


def flatten(roots: list[TreeNode], *, depth: int = 0) -> list[TreeNode]:
    rows = []
    for node in roots:
        node.depth = depth
        rows.append(node)
        rows += flatten(node.children, depth=depth + 1)
    return rows


def lineage(segment: Segment, segments: list[Segment]) -> list[Segment]:
    """The segment's ancestors, root first."""
    by_id = {s.pk: s for s in segments}
    chain: list[Segment] = []
    current = by_id.get(segment.parent_id) if segment.parent_id else None
    while current is not None and current not in chain:
        chain.insert(0, current)
        current = by_id.get(current.parent_id) if current.parent_id else None
    return chain


@dataclass(frozen=True)
class Use:
    what: str
    name: str
    url: str | None


def _admin_url(obj) -> str | None:
    try:
        return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return None


def where_used(segment: Segment) -> list[Use]:
    """Children, segments whose rule reads this one, and every other model that points at it.

    Other apps (activations, automations, campaigns) are found through the relations they
    declare towards Segment, so this module imports none of them.
    """
    uses = [
        Use("Child segment", child.name, reverse("segments-detail", args=[child.pk]))
        for child in segment.children.all()
    ]
    readers = SegmentReference.objects.filter(to_segment=segment).select_related("from_segment")
    uses += [
        Use("Rule reads it (in_segment)", ref.from_segment.name, reverse("segments-detail", args=[ref.from_segment_id]))
        for ref in readers
    ]
    for relation in Segment._meta.related_objects:
        model = relation.related_model
        if model._meta.app_label == "segments" or relation.remote_field is None:
            continue
        what = f"{str(model._meta.verbose_name).capitalize()} ({relation.field.verbose_name})"
        for obj in model._default_manager.filter(**{relation.field.name: segment}).distinct()[:50]:
            uses.append(Use(what, str(obj), _admin_url(obj)))
    return uses


class MemberFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Name or email")
    stage = django_filters.ChoiceFilter(
        field_name="contact__lifecycle_stage",
        choices=LifecycleStage.choices,
        label="Lifecycle stage",
        empty_label="Any stage",
    )
    joined_after = django_filters.DateFilter(
        field_name="joined_at", lookup_expr="date__gte", label="Joined on or after"
    )

    class Meta:
        model = Membership
        fields: list[str] = []

    def search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        for term in value.split():
            queryset = queryset.filter(
                Q(contact__email__istartswith=term)
                | Q(contact__first_name__istartswith=term)
                | Q(contact__last_name__istartswith=term)
            )
        return queryset


def members(segment: Segment, params) -> MemberFilter:
    queryset = (
        Membership.objects.filter(segment=segment)
        .select_related("contact", "contact__company")
        .order_by("contact_id")  # walks the (segment, contact) unique index; no sort of a big segment
    )
    return MemberFilter(params, queryset=queryset)
