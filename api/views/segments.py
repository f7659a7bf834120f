"""Segments: definitions, rule checks and previews, members, history."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer, as_serializer_error

from api.errors import Conflict, InvalidParameter
from api.filters import MembershipChangeFilter, SegmentFilter, check_query_params
from api.models import ApiKey, QueuedTask, Scope
from api.permissions import acting_user, request_scopes, require_scopes, scoped
from api.serializers.governance import ImpactSerializer
from api.serializers.segments import (
    ContactMembershipSerializer,
    ContactSummarySerializer,
    MemberSerializer,
    MembershipChangeSerializer,
    PreviewRequestSerializer,
    PreviewSerializer,
    RuleSerializer,
    RuleValidationSerializer,
    RuleVersionSerializer,
    SegmentSerializer,
    StaticMembersResultSerializer,
    StaticMembersSerializer,
    TaskQueuedSerializer,
)
from api.views.common import DETAIL_BACKENDS, ListOptions
from api.views.governance import draft_dict
from contacts.models import Contact
from predictions.explain import contact_scores
from segments.editing import SegmentInUse, SegmentInvalid, delete_segment, save_segment
from segments.explaining import explain_segment
from segments.governance.approval import save_or_propose
from segments.governance.impact import change_impact
from segments.governance.rule_history import version_diffs
from segments.governance.usage import record_api_read
from segments.models import Membership, MembershipChange, RuleVersion, Segment
from segments.rules.reads import reads_contact_data
from segments.rules.registry import get_fields, propensity_models_named
from segments.rules.validation import errors_before_saving, validate_rule
from segments.static import NotStatic, add_static_members, remove_static_members
from segments.targets import target_contacts
from segments.tasks import queue_refresh

SegmentsAccess = scoped(read=Scope.SEGMENTS_READ, write=Scope.SEGMENTS_WRITE)
PREVIEW_SAMPLE = 10


def rule_errors_as_validation(errors, *, prefix: str = "rule") -> exceptions.ValidationError:
    """Rule errors as a 400 whose paths run from the request body: `rule.all[1].op`."""
    return exceptions.ValidationError(_rule_error_detail(errors, prefix=prefix))


def _rule_error_detail(errors, *, prefix: str = "rule") -> dict[str, list[str]]:
    detail: dict[str, list[str]] = {}
    for error in errors:
        detail.setdefault(f"{prefix}.{error.path}" if error.path else prefix, []).append(error.message)
    return detail


@contextmanager
def invalid_as_400() -> Iterator[None]:
    """A segment's refusal (SegmentInvalid) answered as a 400: fields by name, the rule's errors by JSON path."""
    try:
        yield
    except SegmentInvalid as error:
        detail: dict[str, Any] = (
            as_serializer_error(DjangoValidationError(error.field_errors)) if error.field_errors else {}
        )
        if error.rule_errors:
            detail |= _rule_error_detail(error.rule_errors)
        raise exceptions.ValidationError(detail) from None


def _saved(segment: Segment, request: Request, note: str) -> Segment:
    with invalid_as_400():
        return save_segment(segment, user=acting_user(request), note=note)


def _segment(slug: str) -> Segment:
    return generics.get_object_or_404(Segment, slug=slug)


def _rule_from_body(request: Request, serializer_class: type[RuleSerializer] = RuleSerializer) -> dict:
    """The body with the rule to check or preview; one with field or event conditions needs
    contacts:read too (otherwise its count would answer questions about any contact field, one
    request at a time)."""
    if not isinstance(request.data, dict) or "rule" not in request.data:
        raise exceptions.ValidationError({"rule": ['Send {"rule": {...}}.']})
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    if reads_contact_data(serializer.validated_data["rule"]):
        require_scopes(request, Scope.CONTACTS_READ)
    return serializer.validated_data


def _may_read_contacts(request: Request) -> bool:
    return Scope.CONTACTS_READ in request_scopes(request)


class SegmentList(ListOptions, generics.ListCreateAPIView):
    """Segments by id; filter by kind, status or category; `search` matches name or slug.

    Creating validates the rule (errors by JSON path), checks the dependency graph for cycles and
    queues the first refresh (segments.editing.save_segment).
    """

    queryset = Segment.objects.select_related("parent")
    serializer_class = SegmentSerializer
    permission_classes = [SegmentsAccess]
    filterset_class = SegmentFilter
    search_fields = ["name", "slug"]
    search_description = "Part of the name or slug (case-insensitive)"

    def perform_create(self, serializer: BaseSerializer) -> None:
        data = dict(serializer.validated_data)
        note = data.pop("change_note", "")
        serializer.instance = _saved(Segment(**data), self.request, note)


class SegmentDetail(generics.RetrieveUpdateDestroyAPIView):
    """A segment by slug. Edits go through save_segment (validation, cycles, rule versions, refresh);
    deleting a segment others depend on is refused with 409 naming them."""

    queryset = Segment.objects.select_related("parent")
    serializer_class = SegmentSerializer
    permission_classes = [SegmentsAccess]
    filter_backends = DETAIL_BACKENDS
    lookup_field = "slug"

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        response = super().retrieve(request, *args, **kwargs)
        record_api_read(response.data["id"])  # governance: an API read counts as use
        return response

    def perform_update(self, serializer: BaseSerializer) -> None:
        segment = serializer.instance
        assert isinstance(segment, Segment)  # UpdateModelMixin made the serializer with the object
        data = dict(serializer.validated_data)
        note = data.pop("change_note", "")
        for name, value in data.items():
            setattr(segment, name, value)
        with invalid_as_400():
            self.draft = save_or_propose(segment, user=acting_user(self.request), note=note)
        serializer.instance = segment

    def update(self, request: Request, *args, **kwargs) -> Response:
        """A rule change of a segment that requires approval answers 202 with the draft it made."""
        self.draft = None
        response = super().update(request, *args, **kwargs)
        if self.draft is not None:
            return Response(draft_dict(self.draft), status=status.HTTP_202_ACCEPTED)
        return response

    def perform_destroy(self, instance: Segment) -> None:
        try:
            delete_segment(instance)
        except SegmentInUse as error:
            raise Conflict(error.messages[0], details={"dependants": error.dependants}) from None


@extend_schema(request=None, responses={202: TaskQueuedSerializer}, summary="Queue a refresh of the segment")
@api_view(["POST"])
@permission_classes([scoped(read=Scope.SEGMENTS_WRITE)])
def refresh_segment(request: Request, slug: str) -> Response:
    """Refreshes the segment and then the segments that depend on it, in a background worker."""
    segment = _segment(slug)
    task_id = queue_refresh(segment.pk)  # a refresh queued and not started yet answers for this one too
    api_key = request.auth if isinstance(request.auth, ApiKey) else None
    QueuedTask.objects.get_or_create(
        task_id=task_id, defaults={"name": f"refresh segment {segment.slug}", "api_key": api_key}
    )
    status_url = request.build_absolute_uri(reverse("api:task", args=[task_id]))
    return Response({"task_id": task_id, "status_url": status_url}, status=status.HTTP_202_ACCEPTED)


def _static_change(request: Request, slug: str, change) -> Response:
    segment = _segment(slug)
    serializer = StaticMembersSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    try:
        changed = change(segment, serializer.validated_data["contacts"], user=acting_user(request))
    except NotStatic as error:
        raise Conflict(str(error), field="kind") from None
    segment.refresh_from_db(fields=["size"])
    return Response({"changed": changed, "size": segment.size})


@extend_schema(request=StaticMembersSerializer, responses={200: StaticMembersResultSerializer})
@api_view(["POST"])
@permission_classes([scoped(read=Scope.SEGMENTS_WRITE)])
def add_members(request: Request, slug: str) -> Response:
    """Add contacts to a static segment; unknown ids and current members are left alone."""
    return _static_change(request, slug, add_static_members)


@extend_schema(request=StaticMembersSerializer, responses={200: StaticMembersResultSerializer})
@api_view(["POST"])
@permission_classes([scoped(read=Scope.SEGMENTS_WRITE)])
def remove_members(request: Request, slug: str) -> Response:
    """Remove contacts from a static segment."""
    return _static_change(request, slug, remove_static_members)


@extend_schema(request=RuleSerializer, responses={200: RuleValidationSerializer}, summary="Check a rule")
@api_view(["POST"])
@permission_classes([scoped(read=Scope.SEGMENTS_READ, write=Scope.SEGMENTS_READ)])
def validate_segment_rule(request: Request) -> Response:
    """Every error in the rule, each with its JSON path inside the rule (`all[1].any[0].op`).

    A rule with field or event conditions needs `contacts:read` as well as `segments:read`. The errors
    are those saving the rule would meet (a window past activity retention included)."""
    errors = errors_before_saving(_rule_from_body(request)["rule"])
    return Response({"valid": not errors, "errors": [e.as_dict() for e in errors]})


@extend_schema(request=PreviewRequestSerializer, responses={200: PreviewSerializer}, summary="Count and sample a rule")
@api_view(["POST"])
@permission_classes([scoped(read=Scope.SEGMENTS_READ, write=Scope.SEGMENTS_READ)])
def preview_segment_rule(request: Request) -> Response:
    """How many contacts the rule selects now and 10 of them, without saving anything; with
    `parent`, within that segment's members, as the admin's live count of a child segment counts.

    A rule with field or event conditions needs `contacts:read` as well as `segments:read`; a rule
    of `in_segment` conditions alone is counted for `segments:read`, its sample left empty unless
    the caller also has `contacts:read`."""
    body = _rule_from_body(request, PreviewRequestSerializer)
    errors = validate_rule(body["rule"])
    if errors:
        raise rule_errors_as_validation(errors)
    draft = Segment(rule=body["rule"], parent=body.get("parent"))
    contacts = target_contacts(draft, now=timezone.now())
    sample = contacts.order_by("id").only("id", "email", "first_name", "last_name", "lifecycle_stage")
    shown = sample[:PREVIEW_SAMPLE] if _may_read_contacts(request) else []
    body = {"count": contacts.count(), "sample": ContactSummarySerializer(shown, many=True).data}
    return Response(body)


@extend_schema(
    request=PreviewRequestSerializer,
    responses={200: ImpactSerializer},
    summary="What a rule change would do to the segment now, before saving it",
)
@api_view(["POST"])
@permission_classes([scoped(read=Scope.SEGMENTS_READ, write=Scope.SEGMENTS_READ)])
def segment_rule_impact(request: Request, slug: str) -> Response:
    """Contacts that would join and leave the segment if it took this rule (and `parent`, a slug or
    null; absent: its current parent) now, compared with its stored members: counts, the size after,
    a few of each with the explainer's reason (with `contacts:read`), the segments downstream and
    the activations, automations... that would receive the change. Nothing is saved.

    A rule with field or event conditions needs `contacts:read` as well as `segments:read`."""
    segment = _segment(slug)
    if not segment.is_rule_based:
        raise Conflict(f"Segment {segment.slug} is a static list; it has no rule to change.", field="rule")
    body = _rule_from_body(request, PreviewRequestSerializer)
    errors = validate_rule(body["rule"])
    if errors:
        raise rule_errors_as_validation(errors)
    parent = body["parent"].pk if body.get("parent") is not None else None
    parent_id = parent if "parent" in body else segment.parent_id
    impact = change_impact(segment, rule=body["rule"], parent_id=parent_id)
    return Response(impact.as_dict(with_samples=_may_read_contacts(request)))


class SegmentMembers(ListOptions, generics.ListAPIView):
    """Members by contact id (their e-mails and names: `contacts:read` as well as `segments:read`).
    The cursor is a contact id, so pages neither skip nor repeat a contact that stays a member
    while a refresh adds or removes others."""

    queryset = Membership.objects.select_related("contact").only(
        "contact_id", "joined_at", "contact__email", "contact__first_name", "contact__last_name",
        "contact__lifecycle_stage",
    )  # fmt: skip
    serializer_class = MemberSerializer
    permission_classes = [scoped(read=Scope.SEGMENTS_READ), scoped(read=Scope.CONTACTS_READ)]
    cursor_ordering = "contact_id"
    search_fields = ["^contact__email", "contact__first_name", "contact__last_name"]
    search_description = "Start of the member's email, or part of the first or last name (case-insensitive)"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return super().get_queryset()
        segment = _segment(self.kwargs["slug"])
        record_api_read(segment.pk)  # governance: an API read counts as use
        return super().get_queryset().filter(segment=segment)


class SegmentRuleVersions(ListOptions, generics.ListAPIView):
    """Every version of the segment's rule, newest first: author, time, note, the size before and
    after, and the two rules side by side in plain words (`diff`) as well as JSON."""

    queryset = RuleVersion.objects.select_related("changed_by", "approved_by")
    serializer_class = RuleVersionSerializer
    permission_classes = [scoped(read=Scope.SEGMENTS_READ)]
    cursor_ordering = "-id"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return super().get_queryset()
        return super().get_queryset().filter(segment=_segment(self.kwargs["slug"]))

    def get_serializer(self, *args, **kwargs):
        if args and not getattr(self, "swagger_fake_view", False):
            versions = list(args[0])
            args = ([diff.as_dict() for diff in version_diffs(versions, fields=get_fields())], *args[1:])
        return super().get_serializer(*args, **kwargs)


class SegmentHistory(ListOptions, generics.ListAPIView):
    """Joins and leaves, newest first; filter by kind, reason, contact and time. `detail` (the
    deciding conditions, with the contact's values) is null unless the caller has `contacts:read`."""

    queryset = MembershipChange.objects.all()
    serializer_class = MembershipChangeSerializer
    permission_classes = [scoped(read=Scope.SEGMENTS_READ)]
    filterset_class = MembershipChangeFilter
    cursor_ordering = "-id"
    search_fields = ["^contact__email"]
    search_description = "Start of the contact's email (case-insensitive; needs contacts:read)"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return super().get_queryset()
        return super().get_queryset().filter(segment=_segment(self.kwargs["slug"]))

    def filter_queryset(self, queryset):
        # Searching by email would tell a segments:read key which addresses exist.
        if self.request.query_params.get("search"):
            require_scopes(self.request, Scope.CONTACTS_READ)
        return super().filter_queryset(queryset)

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "with_detail": _may_read_contacts(self.request)}


@extend_schema(
    parameters=[
        OpenApiParameter(
            "explain",
            OpenApiTypes.BOOL,
            description="Add the explainer's tree for each rule segment (it shows the contact's values: needs "
            "contacts:read)",
        )
    ],
    responses={200: ContactMembershipSerializer(many=True)},
    summary="The segments a contact is in, with joined_at and optionally why",
)
@api_view(["GET"])
@permission_classes([scoped(read=Scope.SEGMENTS_READ)])
def contact_segments(request: Request, pk: int) -> Response:
    params = request.query_params
    check_query_params(request, {"explain"})
    raw = params.get("explain", "0").lower()
    if raw not in ("0", "1", "true", "false"):
        raise InvalidParameter("explain is 1 or 0.", field="explain")
    explain = raw in ("1", "true")
    if explain:
        require_scopes(request, Scope.CONTACTS_READ)
    contact = generics.get_object_or_404(Contact, pk=pk)
    memberships = list(
        Membership.objects.filter(contact=contact).select_related("segment").order_by("segment__name", "segment_id")
    )
    data = ContactMembershipSerializer(memberships, many=True).data
    if explain:
        now, fields = timezone.now(), get_fields()
        scores = {score.model: score.to_dict() for score in contact_scores(contact.pk)}
        for item, membership in zip(data, memberships, strict=True):
            rule = membership.segment.rule if membership.segment.is_rule_based else None
            explained = explain_segment(membership.segment, contact, now=now, fields=fields) if rule else None
            item["explanation"] = explained.to_dict() if explained else None
            # A rule reading a propensity score: the score and the factors behind it.
            item["propensity"] = [scores[name] for name in propensity_models_named(rule) if name in scores]
    return Response(data)
