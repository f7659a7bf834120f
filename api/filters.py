"""Query filters for list endpoints. Unknown query parameters are refused, never silently ignored."""

from __future__ import annotations

from datetime import UTC

import django_filters
from django import forms
from django.db.models import QuerySet
from django_filters.fields import IsoDateTimeField
from drf_spectacular.drainage import set_override
from rest_framework.filters import BaseFilterBackend, SearchFilter
from rest_framework.request import Request

from api.errors import InvalidParameter, UnknownParameter
from contacts.models import (
    Activity,
    ActivityKind,
    Company,
    Contact,
    EmailStatus,
    JobFunction,
    LifecycleStage,
    PropertyDefinition,
    Seniority,
    normalize_domain,
    normalize_email,
)
from segments.models import (
    ChangeKind,
    ChangeReason,
    MembershipChange,
    Segment,
    SegmentCategory,
    SegmentKind,
    SegmentStatus,
)

BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


class IntFilter(django_filters.NumberFilter):
    """A whole-number filter bounded to the column's range (a huge number is a 400, not a database error)."""

    field_class = forms.IntegerField

    def __init__(self, *args, min_value: int = -INT_MAX - 1, max_value: int = INT_MAX, **kwargs) -> None:
        super().__init__(*args, min_value=min_value, max_value=max_value, **kwargs)
        # The bounds in the OpenAPI schema too, so clients (and schemathesis) know them.
        set_override(self, "field", {"type": "integer", "minimum": min_value, "maximum": max_value})


class StrictNullBooleanField(forms.NullBooleanField):
    """true/false (or 1/0): anything else is an error, not the same as leaving the filter out
    (NullBooleanField's select widget reads an unknown value as "not given")."""

    widget = forms.TextInput

    def to_python(self, value):
        if value in (None, ""):
            return None
        if str(value).lower() in ("true", "1"):
            return True
        if str(value).lower() in ("false", "0"):
            return False
        raise forms.ValidationError("Enter true or false.", code="invalid")

    def validate(self, value) -> None:
        pass


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictNullBooleanField


def IdFilter(field_name: str) -> IntFilter:
    return IntFilter(field_name=field_name, min_value=1, max_value=BIGINT_MAX)


class UtcDateTimeField(IsoDateTimeField):
    """ISO-8601 date-time, turned into UTC here: PostgreSQL refuses offsets beyond ±15:59 that Python accepts."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError("Enter a date-time between years 1 and 9999.", code="invalid") from None


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


def known_parameters(view) -> set[str]:
    names = set(getattr(view, "extra_query_params", ()))
    filterset_class = getattr(view, "filterset_class", None)
    if filterset_class is not None:
        names |= set(filterset_class.base_filters)
    if getattr(view, "search_fields", None):
        names.add(SearchFilter.search_param)
    paginator = getattr(view, "pagination_class", None)
    if paginator is not None:
        names |= {paginator.cursor_query_param, paginator.page_size_query_param}
    return names


def check_query_params(request: Request, allowed: set[str]) -> None:
    """Refuse a parameter not in `allowed` (a typo must not give an unfiltered list) and, since no
    column can hold one, a value with a NUL character."""
    for name, values in request.query_params.lists():
        if name not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise UnknownParameter(f"Unknown query parameter {name!r}; allowed: {listed}.", field=name)
        if any("\x00" in value for value in values):
            raise InvalidParameter(f"{name} may not contain NUL characters.", field=name)


class KnownParametersOnly(BaseFilterBackend):
    """First filter backend of every view: a typo in a filter name is a 400, not an unfiltered list."""

    def filter_queryset(self, request: Request, queryset: QuerySet, view) -> QuerySet:
        check_query_params(request, known_parameters(view))
        return queryset


class ContactFilter(django_filters.FilterSet):
    email = django_filters.CharFilter(method="filter_email", help_text="Exact email (case-insensitive)")
    lifecycle_stage = django_filters.MultipleChoiceFilter(choices=LifecycleStage.choices)
    email_status = django_filters.ChoiceFilter(choices=EmailStatus.choices)
    job_function = django_filters.ChoiceFilter(choices=JobFunction.choices)
    seniority = django_filters.ChoiceFilter(choices=Seniority.choices)
    country = django_filters.CharFilter(field_name="country", lookup_expr="iexact")
    company = IdFilter("company_id")
    company_domain = django_filters.CharFilter(method="filter_company_domain")
    owner = IdFilter("owner_id")
    do_not_contact = BooleanFilter()
    lead_score_min = IntFilter(field_name="lead_score", lookup_expr="gte")
    lead_score_max = IntFilter(field_name="lead_score", lookup_expr="lte")
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")
    updated_after = DateTimeFilter(field_name="updated_at", lookup_expr="gte")
    updated_before = DateTimeFilter(field_name="updated_at", lookup_expr="lt")
    segment = django_filters.CharFilter(method="filter_segment", help_text="Members of the segment with this slug")

    class Meta:
        model = Contact
        fields: list[str] = []

    def filter_email(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(email=normalize_email(value))

    def filter_company_domain(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(company__domain=normalize_domain(value))

    def filter_segment(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(memberships__segment__in=Segment.objects.filter(slug=value))


class CompanyFilter(django_filters.FilterSet):
    domain = django_filters.CharFilter(method="filter_domain")
    industry = django_filters.CharFilter(lookup_expr="iexact")
    country = django_filters.CharFilter(lookup_expr="iexact")
    is_target_account = BooleanFilter()
    is_competitor = BooleanFilter()
    employee_count_min = IntFilter(field_name="employee_count", lookup_expr="gte")
    employee_count_max = IntFilter(field_name="employee_count", lookup_expr="lte")
    updated_after = DateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Company
        fields: list[str] = []

    def filter_domain(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(domain=normalize_domain(value))


class ActivityFilter(django_filters.FilterSet):
    contact = IdFilter("contact_id")
    kind = django_filters.MultipleChoiceFilter(choices=ActivityKind.choices)
    topic = django_filters.CharFilter(lookup_expr="iexact")
    product = django_filters.CharFilter(lookup_expr="iexact")
    campaign = django_filters.CharFilter(lookup_expr="iexact")
    external_id = django_filters.CharFilter()
    occurred_after = DateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = DateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = Activity
        fields: list[str] = []


class DocumentedSearchFilter(SearchFilter):
    """`search` in the schema only where the view searches (DRF documents it on every list view)."""

    def get_schema_operation_parameters(self, view) -> list[dict]:
        if not getattr(view, "search_fields", None):
            return []
        parameters = super().get_schema_operation_parameters(view)
        parameters[0]["description"] = getattr(view, "search_description", parameters[0]["description"])
        return parameters


class PropertyDefinitionFilter(django_filters.FilterSet):
    class Meta:
        model = PropertyDefinition
        fields = ["layer", "type", "source"]


class SegmentFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=SegmentKind.choices)
    status = django_filters.ChoiceFilter(choices=SegmentStatus.choices)
    category = django_filters.ChoiceFilter(choices=SegmentCategory.choices)

    class Meta:
        model = Segment
        fields: list[str] = []


class MembershipChangeFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=ChangeKind.choices)
    reason = django_filters.ChoiceFilter(choices=ChangeReason.choices)
    contact = IdFilter("contact_id")
    changed_after = DateTimeFilter(field_name="changed_at", lookup_expr="gte")
    changed_before = DateTimeFilter(field_name="changed_at", lookup_expr="lt")

    class Meta:
        model = MembershipChange
        fields: list[str] = []
