"""Destinations, activations, their runs, and export files."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from activation.exports import start_run
from activation.models import Activation, Destination, ExportRun, RunStatus
from activation.tasks import enqueue_export
from api.errors import Conflict
from api.models import Scope
from api.permissions import request_scopes, scoped
from api.serializers.activation import ActivationSerializer, DestinationSerializer, ExportRunSerializer
from api.views.common import DETAIL_BACKENDS, ListOptions

READERS = (Scope.ACTIVATIONS_WRITE, Scope.ACTIVATIONS_RUN)
ManageAccess = scoped(read=READERS, write=Scope.ACTIVATIONS_WRITE)
RunAccess = scoped(read=READERS, write=Scope.ACTIVATIONS_RUN)


class ProtectedDelete:
    """A destination or activation still in use answers 409 naming what holds it, not a 500."""

    def perform_destroy(self, instance) -> None:
        try:
            instance.delete()
        except ProtectedError as error:
            users = ", ".join(sorted({str(obj) for obj in error.protected_objects})[:5])
            raise Conflict(f"{instance} is still used by: {users}. Remove those first.") from None


class DestinationList(ListOptions, generics.ListCreateAPIView):
    queryset = Destination.objects.all()
    serializer_class = DestinationSerializer
    permission_classes = [ManageAccess]


class DestinationDetail(ProtectedDelete, generics.RetrieveUpdateDestroyAPIView):
    queryset = Destination.objects.all()
    serializer_class = DestinationSerializer
    permission_classes = [ManageAccess]
    filter_backends = DETAIL_BACKENDS


class ActivationList(ListOptions, generics.ListCreateAPIView):
    queryset = Activation.objects.select_related("segment").prefetch_related("suppression_segments")
    serializer_class = ActivationSerializer
    permission_classes = [ManageAccess]


class ActivationDetail(ProtectedDelete, generics.RetrieveUpdateDestroyAPIView):
    queryset = Activation.objects.select_related("segment").prefetch_related("suppression_segments")
    serializer_class = ActivationSerializer
    permission_classes = [ManageAccess]
    filter_backends = DETAIL_BACKENDS


def _may_download(request: Request) -> bool:
    return Scope.ACTIVATIONS_RUN in request_scopes(request)


class ActivationRuns(ListOptions, generics.ListAPIView):
    """Export runs of one activation, newest first."""

    queryset = ExportRun.objects.all()
    serializer_class = ExportRunSerializer
    permission_classes = [RunAccess]
    cursor_ordering = "-id"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no URL arguments
            return super().get_queryset()
        activation = generics.get_object_or_404(Activation, pk=self.kwargs["pk"])
        return super().get_queryset().filter(activation=activation)

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "may_download": _may_download(self.request)}


class ExportRunDetail(generics.RetrieveAPIView):
    queryset = ExportRun.objects.all()
    serializer_class = ExportRunSerializer
    permission_classes = [RunAccess]
    filter_backends = DETAIL_BACKENDS

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "may_download": _may_download(self.request)}


@extend_schema(request=None, responses={202: ExportRunSerializer}, summary="Queue an export run now")
@api_view(["POST"])
@permission_classes([scoped(read=Scope.ACTIVATIONS_RUN)])
def run_activation(request: Request, pk: int) -> Response:
    activation = generics.get_object_or_404(Activation, pk=pk)
    if not activation.enabled:
        raise Conflict(f"Activation {activation.name!r} is disabled; enable it to export.", field="enabled")
    with transaction.atomic():
        run = start_run(activation)
        enqueue_export(run)
    context = {"request": request, "may_download": True}
    return Response(ExportRunSerializer(run, context=context).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(
    responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="The export file")},
    summary="Download an export run's file (added or removed members)",
)
@api_view(["GET"])
@permission_classes([scoped(read=Scope.ACTIVATIONS_RUN)])
def download_export(request: Request, pk: int, which: str) -> FileResponse:
    run = ExportRun.objects.filter(pk=pk, status=RunStatus.SUCCEEDED).first()
    name = {"added": run.file_path, "removed": run.removed_file_path}.get(which, "") if run else ""
    root = Path(settings.MEDIA_ROOT).resolve()
    file = (root / name).resolve() if name else None
    if file is None or root not in file.parents or not file.is_file():
        raise exceptions.NotFound(f"Export run {pk} has no {which!r} file.")
    return FileResponse(file.open("rb"), as_attachment=True, filename=file.name, content_type="text/csv")
