"""Governance: a segment's reviews (list, record) and the governance report of every segment."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import Conflict, InvalidParameter
from api.filters import BIGINT_MAX, check_query_params
from api.models import Scope
from api.permissions import acting_user, describe_caller, request_scopes, require_scopes, scoped
from api.serializers.governance import (
    GovernanceReportSerializer,
    RejectInputSerializer,
    ReviewInputSerializer,
    ReviewSerializer,
    RuleDraftListSerializer,
    RuleDraftSerializer,
)
from api.views.common import ListOptions
from segments.governance.approval import approve_draft, rebase_draft, reject_draft, stale_message
from segments.governance.impact import change_impact
from segments.governance.report import SORTS, BadFilter, governance_report, read_filters
from segments.governance.reviews import record_review
from segments.governance.rule_history import diff_row_dict
from segments.models import DraftStatus, Review, RuleDraft, Segment, SegmentCategory, SegmentStatus
from segments.rules.reads import reads_contact_data
from segments.rules.registry import get_fields
from segments.rules.validation import InvalidRule
from segments.rules.wording import compare_rules, segment_names


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
        OpenApiParameter(
            "owner",
            {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX},
            description="Only segments this user (id) owns or backs up",
        ),
        OpenApiParameter(
            "sort", str, enum=[*SORTS, *(f"-{name}" for name in SORTS)], description="- descends (default name)"
        ),
    ],
    responses=GovernanceReportSerializer,
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


def draft_dict(draft: RuleDraft, *, with_impact: bool = False, with_samples: bool = False) -> dict:
    """A draft with its rule diff in words (live -> proposed) and, on request, its impact now."""
    segment = draft.segment
    live = segment.rule if draft.status == DraftStatus.PENDING else draft.base_rule
    fields = get_fields()
    rows = compare_rules(live, draft.rule, fields=fields, segment_names=segment_names(live, draft.rule))
    body = {
        "id": draft.pk,
        "segment": segment.slug,
        "status": draft.status,
        "author": draft.author.get_username() if draft.author else None,
        "created_at": draft.created_at.isoformat(),
        "note": draft.note,
        "rule": draft.rule,
        "base_rule": draft.base_rule,
        "stale": stale_message(draft) if draft.status == DraftStatus.PENDING else None,
        "decided_by": draft.decided_by.get_username() if draft.decided_by else None,
        "decided_at": draft.decided_at.isoformat() if draft.decided_at else None,
        "decision_note": draft.decision_note,
        "version": draft.version_id,
        "diff": [diff_row_dict(row) for row in rows],
    }
    if with_impact and draft.status == DraftStatus.PENDING:
        try:
            impact = change_impact(segment, rule=draft.rule, parent_id=segment.parent_id, fields=fields)
        except InvalidRule as error:
            body["impact"] = {"error": str(error)}
        else:
            body["impact"] = impact.as_dict(with_samples=with_samples)
    return body


def _draft(pk: int) -> RuleDraft:
    return generics.get_object_or_404(RuleDraft.objects.select_related("segment", "author", "decided_by"), pk=pk)


@extend_schema(
    summary="The segment's rule drafts (edits waiting for approval and decided ones)", responses=RuleDraftListSerializer
)
@api_view(["GET"])
@permission_classes([scoped(read=Scope.SEGMENTS_READ)])
def segment_drafts(request: Request, slug: str) -> Response:
    segment = generics.get_object_or_404(Segment, slug=slug)
    drafts = RuleDraft.objects.filter(segment=segment).select_related("segment", "author", "decided_by")[:50]
    return Response({"results": [draft_dict(draft) for draft in drafts]})


@extend_schema(
    summary="A rule draft with its diff in words and the impact of publishing it now", responses=RuleDraftSerializer
)
@api_view(["GET"])
@permission_classes([scoped(read=Scope.SEGMENTS_READ)])
def rule_draft(request: Request, pk: int) -> Response:
    """The impact's counts need `contacts:read` for a rule reading contact data (as a preview does);
    its sample of contacts too."""
    draft = _draft(pk)
    if reads_contact_data(draft.rule):
        require_scopes(request, Scope.CONTACTS_READ)
    samples = Scope.CONTACTS_READ in request_scopes(request)
    return Response(draft_dict(draft, with_impact=True, with_samples=samples))


def _decide(request: Request, pk: int, decide) -> Response:
    draft = _draft(pk)
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError({"reason": ["Send a JSON object."]})
    try:
        decide(draft)
    except DjangoValidationError as error:
        problems = error.message_dict
        if "approver" in problems or "user" in problems:
            raise exceptions.PermissionDenied(" ".join(problems.get("approver") or problems["user"])) from None
        if "base_version" in problems or "status" in problems:
            field = "base_version" if "base_version" in problems else "status"
            raise Conflict(problems[field][0], field=field) from None
        raise exceptions.ValidationError(problems) from None
    return Response(draft_dict(_draft(pk)))


@extend_schema(request=None, responses=RuleDraftSerializer, summary="Approve and publish a rule draft")
@api_view(["POST"])
@permission_classes([scoped(read=Scope.SEGMENTS_WRITE)])
def approve_rule_draft(request: Request, pk: int) -> Response:
    """By a signed-in Operations user other than the author (an API key is no person: 403). A draft
    made against a live rule that changed since is refused (409) until rebased."""
    return _decide(request, pk, lambda draft: approve_draft(draft, approver=acting_user(request)))


@extend_schema(request=RejectInputSerializer, responses=RuleDraftSerializer, summary="Reject a rule draft")
@api_view(["POST"])
@permission_classes([scoped(read=Scope.SEGMENTS_WRITE)])
def reject_rule_draft(request: Request, pk: int) -> Response:
    """Body: {"reason": "..."} (optional)."""
    body = RejectInputSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    reason = body.validated_data["reason"]
    return _decide(request, pk, lambda draft: reject_draft(draft, user=acting_user(request), reason=reason))


@extend_schema(request=None, responses=RuleDraftSerializer, summary="Rebase a stale rule draft on the live rule")
@api_view(["POST"])
@permission_classes([scoped(read=Scope.SEGMENTS_WRITE)])
def rebase_rule_draft(request: Request, pk: int) -> Response:
    return _decide(request, pk, lambda draft: rebase_draft(draft, user=acting_user(request)))
