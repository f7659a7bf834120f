"""Segment analytics: the quarterly comparison and pairwise overlap (segments/analytics/)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import InvalidParameter, UnknownParameter
from api.models import Scope
from api.permissions import scoped
from segments.analytics.measures import compare_segments
from segments.analytics.overlap import MAX_SEGMENTS, check_count, overlap
from segments.analytics.periods import BadParameter
from segments.analytics.reports import comparison_dict, read_channel, read_period, read_sort, read_stage
from segments.models import Segment

AnalyticsAccess = scoped(read=Scope.SEGMENTS_READ)


def _known_only(request: Request, allowed: set[str]) -> None:
    for name in request.query_params:
        if name not in allowed:
            listed = ", ".join(sorted(allowed))
            raise UnknownParameter(f"Unknown query parameter {name!r}; allowed: {listed}.", field=name)


@extend_schema(
    summary="All active segments compared with the whole database over a period",
    parameters=[
        OpenApiParameter(
            "period",
            str,
            description="2026Q3, 2026-07, 2026-W27, 2026-07-14 or 2026-07-01..2026-09-30; "
            "default: the last full quarter; at most 3 years",
        ),
        OpenApiParameter(
            "stage",
            str,
            description="Conversion target: mql, sql, opportunity, customer (default) or "
            "evangelist; a won deal always counts",
        ),
        OpenApiParameter("sort", str, description="name, size, growth, engagement, conversion or revenue; - descends"),
        OpenApiParameter(
            "channel", str, description="Only this channel's response: email, web, content, events, sales"
        ),
    ],
    responses=OpenApiTypes.OBJECT,
)
@api_view(["GET"])
@permission_classes([AnalyticsAccess])
def segment_comparison(request: Request) -> Response:
    """Size, growth, engagement rate, conversion rate and revenue per contact of every active
    segment with 95% intervals, each rate flagged high or low only when its interval excludes the
    database's value; outcomes count for a segment only while the contact was a member."""
    _known_only(request, {"period", "stage", "sort", "channel"})
    try:
        period = read_period(request.query_params.get("period"))
        stage = read_stage(request.query_params.get("stage"))
        sort = read_sort(request.query_params.get("sort"))
        channel = read_channel(request.query_params.get("channel"))
    except BadParameter as error:
        raise InvalidParameter(str(error), field=error.parameter) from None
    return Response(comparison_dict(compare_segments(period, stage=stage), sort=sort, channel=channel))


@extend_schema(
    summary="Shared members and Jaccard overlap of chosen segments",
    parameters=[OpenApiParameter("segments", str, description=f"Comma-separated slugs, 2 to {MAX_SEGMENTS}")],
    responses=OpenApiTypes.OBJECT,
)
@api_view(["GET"])
@permission_classes([AnalyticsAccess])
def segment_overlap(request: Request) -> Response:
    _known_only(request, {"segments"})
    slugs = [slug.strip() for slug in request.query_params.get("segments", "").split(",") if slug.strip()]
    try:
        check_count(len(set(slugs)))
    except BadParameter as error:
        raise InvalidParameter(str(error), field=error.parameter) from None
    if len(slugs) < 2:
        raise InvalidParameter("segments: name at least two segment slugs, comma-separated.", field="segments")
    found = {s.slug: s for s in Segment.objects.filter(slug__in=slugs)}
    missing = [slug for slug in slugs if slug not in found]
    if missing:
        raise InvalidParameter(f"segments: no segment with slug {missing[0]!r}.", field="segments")
    result = overlap([found[slug] for slug in slugs])
    return Response(
        {
            "segments": [
                {"slug": s.slug, "members": size} for s, size in zip(result.segments, result.sizes, strict=True)
            ],
            "pairs": [
                {"a": a.slug, "b": b.slug, "shared": shared, "jaccard": None if j is None else round(j, 6)}
                for a, b, shared, j in result.pairs()
            ],
        }
    )
