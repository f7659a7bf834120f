"""Contacts, companies, activities and property definitions."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import Conflict
from api.filters import ActivityFilter, CompanyFilter, ContactFilter, PropertyDefinitionFilter
from api.models import Scope
from api.permissions import acting_user, scoped
from api.serializers.contacts import (
    ActivityIngestResultSerializer,
    ActivityRowsSerializer,
    ActivitySerializer,
    CompanyMergeRequestSerializer,
    CompanyMergeSerializer,
    CompanyRowsSerializer,
    CompanySerializer,
    ContactRowsSerializer,
    ContactSerializer,
    ErasureSerializer,
    MergeRequestSerializer,
    MergeSerializer,
    PropertyDefinitionSerializer,
    UpsertResultSerializer,
)
from api.views.common import DETAIL_BACKENDS, ListOptions, bulk_rows, row_failures
from contacts import writes
from contacts.company_merging import merge_companies, undo_company_merge
from contacts.erasure import erase_contacts
from contacts.ingest import UpsertResult
from contacts.merging import BadChoice, MergeRefused, merge_contacts, undo_merge
from contacts.models import Activity, Company, CompanyMerge, Contact, ContactMerge, PropertyDefinition

ContactsAccess = scoped(read=Scope.CONTACTS_READ, write=Scope.CONTACTS_WRITE)
ActivitiesAccess = scoped(read=Scope.CONTACTS_READ, write=Scope.ACTIVITIES_WRITE)


class ContactList(ListOptions, generics.ListCreateAPIView):
    """Contacts by id; filter by field or `segment=<slug>`; `search` matches the email's start or a name."""

    queryset = Contact.objects.select_related("company")
    serializer_class = ContactSerializer
    permission_classes = [ContactsAccess]
    filterset_class = ContactFilter
    search_fields = ["^email", "first_name", "last_name"]
    search_description = "Start of the email, or part of the first or last name (case-insensitive)"


class ContactDetail(generics.RetrieveUpdateDestroyAPIView):
    queryset = Contact.objects.select_related("company")
    serializer_class = ContactSerializer
    permission_classes = [ContactsAccess]
    filter_backends = DETAIL_BACKENDS

    def perform_destroy(self, instance: Contact) -> None:
        writes.delete(instance)


@extend_schema(
    request=None,
    responses={200: ErasureSerializer},
    summary="Erase a contact: its personal data everywhere, and its removal queued to every destination",
)
@api_view(["POST"])
@permission_classes([scoped(read=Scope.CONTACTS_ERASE)])
def erase_contact(request: Request, pk: int) -> Response:
    """Deletes the contact with its activities, metrics and histories, drops it from export reports
    and the admin history, and queues an export run of every activation whose destination received
    it, which sends its removal (removal file or webhook leave event); rewrites the export files kept
    without its rows; and queues an erasure notice (the contact's id) to every automation webhook
    that was sent it. It cannot be undone."""
    erasure = erase_contacts([pk], by=acting_user(request))
    if not erasure.erased:
        raise NotFound(f"No contact with id {pk}.")
    return Response({"erased": pk, "queued_runs": erasure.queued_runs, "webhook_notices": erasure.webhook_notices})


@extend_schema(
    request=MergeRequestSerializer,
    responses={201: MergeSerializer},
    summary="Merge another contact into this one (field by field; undo with merges/<id>/undo/)",
)
@api_view(["POST"])
@permission_classes([scoped(read=Scope.CONTACTS_WRITE)])
def merge_contact(request: Request, pk: int) -> Response:
    """Keeps this contact and deletes `loser`: activities, deals, lifecycle history and segment
    memberships move here, the survivor stays in every suppression segment either was in, and
    everything else is kept on the merge for an exact undo. 404 for an unknown contact; 400 naming
    `choices.<key>` for a field either contact cannot give; refused (409, saying why) for a contact
    into itself, or while an export of a segment holding either runs."""
    data = MergeRequestSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    for contact_id in (pk, data.validated_data["loser"]):
        if not Contact.objects.filter(pk=contact_id).exists():
            raise NotFound(f"No contact with id {contact_id}.")
    try:
        merge = merge_contacts(
            survivor_id=pk,
            loser_id=data.validated_data["loser"],
            choices=data.validated_data.get("choices"),
            by=acting_user(request),
        )
    except MergeRefused as refused:
        raise _merge_refusal(refused) from None
    return Response(MergeSerializer(merge).data, status=201)


def _merge_refusal(refused: MergeRefused) -> APIException:
    """Bad `choices` are bad input (400 naming the key, as the serializer names other bad input);
    any other refusal clashes with what is stored (409)."""
    if isinstance(refused, BadChoice):
        return ValidationError({refused.path: [refused.reason]})
    return Conflict(str(refused))


@extend_schema(request=None, responses={200: MergeSerializer}, summary="Undo a merge: both contacts as they were")
@api_view(["POST"])
@permission_classes([scoped(read=Scope.CONTACTS_WRITE)])
def undo_contact_merge(request: Request, pk: int) -> Response:
    """Puts back the merged-away contact with its id and everything that went with it, the moved rows
    and the survivor's fields. Refused (409) when already undone, when a later merge of the survivor
    stands, or when the e-mail was taken again."""
    if not ContactMerge.objects.filter(pk=pk).exists():
        raise NotFound(f"No merge with id {pk}.")
    try:
        merge = undo_merge(pk, by=acting_user(request))
    except MergeRefused as refused:
        raise Conflict(str(refused)) from None
    return Response(MergeSerializer(merge).data)


class CompanyList(ListOptions, generics.ListCreateAPIView):
    """Companies by id; `search` matches the name or the domain's start."""

    queryset = Company.objects.all()
    serializer_class = CompanySerializer
    permission_classes = [ContactsAccess]
    filterset_class = CompanyFilter
    search_fields = ["name", "^domain"]
    search_description = "Part of the name, or start of the domain (case-insensitive)"


class CompanyDetail(generics.RetrieveUpdateDestroyAPIView):
    queryset = Company.objects.all()
    serializer_class = CompanySerializer
    permission_classes = [ContactsAccess]
    filter_backends = DETAIL_BACKENDS

    def perform_destroy(self, instance: Company) -> None:
        writes.delete(instance)


@extend_schema(
    request=CompanyMergeRequestSerializer,
    responses={201: CompanyMergeSerializer},
    summary="Merge another company into this one (field by field; undo with company-merges/<id>/undo/)",
)
@api_view(["POST"])
@permission_classes([scoped(read=Scope.CONTACTS_WRITE)])
def merge_company(request: Request, pk: int) -> Response:
    """Keeps this company and deletes `loser`: its contacts, deals and every other row pointing at it
    move here (the contacts' segments catch up after the merge), and the rest is kept on the merge for
    an exact undo. 404 for an unknown company; 400 naming `choices.<key>` for a field either company
    cannot give; refused (409, saying why) for a company into itself or one already merged away."""
    data = CompanyMergeRequestSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    for company_id in (pk, data.validated_data["loser"]):
        # One merged away is a 409 that says into which company (from merge_companies).
        merged_away = CompanyMerge.objects.filter(loser_id=company_id, undone_at=None)
        if not Company.objects.filter(pk=company_id).exists() and not merged_away.exists():
            raise NotFound(f"No company with id {company_id}.")
    try:
        merge = merge_companies(
            survivor_id=pk,
            loser_id=data.validated_data["loser"],
            choices=data.validated_data.get("choices"),
            by=acting_user(request),
        )
    except MergeRefused as refused:
        raise _merge_refusal(refused) from None
    return Response(CompanyMergeSerializer(merge).data, status=201)


@extend_schema(
    request=None, responses={200: CompanyMergeSerializer}, summary="Undo a company merge: both companies as they were"
)
@api_view(["POST"])
@permission_classes([scoped(read=Scope.CONTACTS_WRITE)])
def undo_company_merge_view(request: Request, pk: int) -> Response:
    """Puts back the merged-away company with its id, the rows that moved and the survivor's fields.
    Refused (409) when already undone, when a later merge of the survivor stands, or when the id or a
    domain it would give back was taken again."""
    if not CompanyMerge.objects.filter(pk=pk).exists():
        raise NotFound(f"No company merge with id {pk}.")
    try:
        merge = undo_company_merge(pk, by=acting_user(request))
    except MergeRefused as refused:
        raise Conflict(str(refused)) from None
    return Response(CompanyMergeSerializer(merge).data)


class ActivityList(ListOptions, generics.ListAPIView):
    """Activities, newest stored first."""

    queryset = Activity.objects.all()
    serializer_class = ActivitySerializer
    permission_classes = [ActivitiesAccess]
    filterset_class = ActivityFilter
    cursor_ordering = "-id"


class PropertyDefinitionList(ListOptions, generics.ListCreateAPIView):
    """Custom contact properties; declaring one lets contacts carry `properties.<key>` and rules use it."""

    queryset = PropertyDefinition.objects.all()
    serializer_class = PropertyDefinitionSerializer
    permission_classes = [ContactsAccess]
    filterset_class = PropertyDefinitionFilter
    search_fields = ["key", "label"]
    search_description = "Part of the key or label (case-insensitive)"


def _upsert_response(result: UpsertResult) -> Response:
    body = {
        "created": [{"index": r.index, "id": r.id, "key": r.key} for r in result.created],
        "updated": [{"index": r.index, "id": r.id, "key": r.key} for r in result.updated],
        "failed": row_failures(result.failed),
    }
    return Response(body)


@extend_schema(
    request=ContactRowsSerializer,
    responses={200: UpsertResultSerializer},
    summary="Create or update up to 10,000 contacts matched by email",
)
@api_view(["POST"])
@permission_classes([scoped(read=Scope.CONTACTS_WRITE)])
def contacts_bulk_upsert(request: Request) -> Response:
    """Each row is checked on its own: good rows are stored together (all or nothing), bad rows are listed."""
    rows = bulk_rows(request)
    result = writes.upsert_contacts(rows)
    return _upsert_response(result)


@extend_schema(
    request=CompanyRowsSerializer,
    responses={200: UpsertResultSerializer},
    summary="Create or update up to 10,000 companies matched by domain",
)
@api_view(["POST"])
@permission_classes([scoped(read=Scope.CONTACTS_WRITE)])
def companies_bulk_upsert(request: Request) -> Response:
    rows = bulk_rows(request)
    result = writes.upsert_companies(rows)
    return _upsert_response(result)


@extend_schema(
    request=ActivityRowsSerializer,
    responses={200: ActivityIngestResultSerializer},
    summary="Store up to 10,000 activities; repeated external_ids are counted as duplicates",
)
@api_view(["POST"])
@permission_classes([scoped(read=Scope.ACTIVITIES_WRITE)])
def activities_bulk(request: Request) -> Response:
    rows = bulk_rows(request)
    result = writes.ingest_activities(rows)
    body = {"created": result.created, "duplicates": result.duplicates, "failed": row_failures(result.failed)}
    return Response(body)
