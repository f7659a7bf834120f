"""Governance: a segment's reviews (list, record) and the governance report of every segment."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import InvalidParameter
from api.filters import check_query_params
from api.models import Scope
from api.permissions import acting_user, describe_caller, scoped
from api.serializers.governance import ReviewInputSerializer, ReviewSerializer
from api.views.common import ListOptions
from segments.governance.report import SORTS, BadFilter, governance_report, read_filters
from segments.governance.reviews import record_review
from segments.models import Review, Segment, SegmentCategory, SegmentStatus


class SegmentReviews(ListOptions, generics.ListAPIView):
    """The segment's reviews, newest first, each with the snapshot of its figures at review time.

    POST records a review (`segments:write`): kind (metrics, boundaries, strategy), decision
    (keep, adjust, merge, retire), notes; `rule` for adjust, `merged_into` (a slug) for merge.
    Retire and merge archive the segment and are refused (400) while anything depends on it."""

    queryset = Review.objects.select_related("segment", "reviewer", "merged_into")
    serializer_class = ReviewSerializer
    permission_classes = [scoped(read=Scope.SEGMENTS_READ, write=Scope.SEGMENTS_WRITE)]
    cursor_ordering = "-id"

    def _segment(self) -> Segment:
        return generics.get_object_or_404(Segment, slug=self.kwargs["slug"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return super().get_queryset()
        return super().get_queryset().filter(segment=self._segment())

    @extend_schema(request=ReviewInputSerializer, responses={201: ReviewSerializer})
    def post(self, request: Request, slug: str) -> Response:
        segment = self._segment()
        serializer = ReviewInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            review = record_review(
                segment,
                kind=data["kind"],
                decision=data["decision"],
                reviewer=acting_user(request),
                recorded_by=describe_caller(request),
                notes=data["notes"],
                new_rule=data["rule"],
                merge_into=data["merged_into"],
            )
        except DjangoValidationError as error:
            raise exceptions.ValidationError(error.message_dict) from None
        return Response(ReviewSerializer(review).data, status=status.HTTP_201_CREATED)


@extend_schema(
    summary="Every segment with owners, reviews per kind, next due date and health flags",
    parameters=[
        OpenApiParameter("mine", OpenApiTypes.BOOL, description="Only segments the caller owns or backs up"),
        OpenApiParameter("overdue", OpenApiTypes.BOOL, description="Only segments with a review overdue"),
        OpenApiParameter("unhealthy", OpenApiTypes.BOOL, description="Only segments with a health flag"),
        OpenApiParameter("category", str, enum=SegmentCategory.values),
        OpenApiParameter("status", str, enum=SegmentStatus.values),
        OpenApiParameter("owner", int, description="Only segments this user (id) owns or backs up"),
        OpenApiParameter(
            "sort", str, enum=[*SORTS, *(f"-{name}" for name in SORTS)], description="- descends (default name)"
        ),
    ],
    responses=OpenApiTypes.OBJECT,
)
@api_view(["GET"])
@permission_classes([scoped(read=Scope.SEGMENTS_READ)])
def governance(request: Request) -> Response:
    """The governance report: the same rows as the admin's governance page, and the sprawl check
    (active primary segments against the strategy's range)."""
    check_query_params(request, {"mine", "overdue", "unhealthy", "category", "status", "owner", "sort"})
    try:
        filters = read_filters(request.query_params)
    except BadFilter as error:
        raise InvalidParameter(str(error), field=error.parameter) from None
    report = governance_report(filters, user=acting_user(request))
    sprawl = report.sprawl
    return Response(
        {
            "sprawl": {
                "primary": sprawl.primary,
                "minimum": sprawl.minimum,
                "maximum": sprawl.maximum,
                "verdict": sprawl.verdict,
            },
            "total": report.total,
            "segments": [row.as_dict() for row in report.rows],
        }
    )
