"""Segment boundary tests and dimension comparison (segments/boundaries.py)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import InvalidParameter
from api.models import Scope
from api.permissions import scoped
from api.serializers.boundaries import BoundaryTestSerializer, DimensionComparisonSerializer
from segments.boundaries import (
    BadInput,
    boundary_dict,
    boundary_test,
    compare_dimensions,
    dimension_dict,
    parse_bracketing,
)
from segments.models import Segment

BoundaryAccess = scoped(read=Scope.SEGMENTS_READ, write=Scope.SEGMENTS_READ)  # POST reads: the body is the question


@extend_schema(
    request=BoundaryTestSerializer,
    responses=OpenApiTypes.OBJECT,
    summary="Compare bracketings of a number field by how distinct the brackets' behaviour is",
)
@api_view(["POST"])
@permission_classes([BoundaryAccess])
def boundary_test_view(request: Request) -> Response:
    """Per bracket: contacts and outcome, engagement and revenue rates with 95% intervals; per
    bracketing: chi-square and Cramér's V on the outcome, Kruskal–Wallis and epsilon² on
    engagement score; the winner with a bootstrap interval; cut points suggested from the data and
    scored on held-out contacts. Nothing is stored."""
    body = BoundaryTestSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    data = body.validated_data
    try:
        bracketings = [parse_bracketing(raw, where=f"bracketings[{i}]") for i, raw in enumerate(data["bracketings"])]
        report = boundary_test(
            data["field"], bracketings, outcome=data["outcome"], days=data["days"], campaign=data["campaign"]
        )
    except BadInput as error:
        raise InvalidParameter(str(error), field=error.field) from None
    return Response(boundary_dict(report))


@extend_schema(
    request=DimensionComparisonSerializer,
    responses=OpenApiTypes.OBJECT,
    summary="Compare segmentation schemes by how much of an outcome they explain on held-out contacts",
)
@api_view(["POST"])
@permission_classes([BoundaryAccess])
def dimension_comparison_view(request: Request) -> Response:
    body = DimensionComparisonSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    data = body.validated_data
    slugs = data.get("segments", [])
    found = {s.slug: s for s in Segment.objects.filter(slug__in=slugs)}
    missing = [slug for slug in slugs if slug not in found]
    if missing:
        raise InvalidParameter(f"segments: no segment with slug {missing[0]!r}.", field="segments")
    try:
        report = compare_dimensions(
            list(dict.fromkeys(data["schemes"])),
            outcome=data["outcome"],
            days=data["days"],
            campaign=data["campaign"],
            segments=[found[slug] for slug in dict.fromkeys(slugs)],
        )
    except BadInput as error:
        raise InvalidParameter(str(error), field=error.field) from None
    return Response(dimension_dict(report))
