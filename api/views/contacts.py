"""Contacts, companies, activities and property definitions."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from api.filters import ActivityFilter, CompanyFilter, ContactFilter, PropertyDefinitionFilter
from api.models import Scope
from api.permissions import acting_user, scoped
from api.serializers.contacts import (
    ActivityIngestResultSerializer,
    ActivityRowsSerializer,
    ActivitySerializer,
    CompanyRowsSerializer,
    CompanySerializer,
    ContactRowsSerializer,
    ContactSerializer,
    ErasureSerializer,
    PropertyDefinitionSerializer,
    UpsertResultSerializer,
)
from api.views.common import DETAIL_BACKENDS, ListOptions, bulk_rows, row_failures
from contacts import writes
from contacts.erasure import erase_contacts
from contacts.ingest import UpsertResult
from contacts.models import Activity, Company, Contact, PropertyDefinition

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
