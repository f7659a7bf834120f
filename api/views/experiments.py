"""Experiments on campaign content: set-up (create, edit, start, stop, clone), results as JSON and as
CSV (activation/experiment_*.py). Reading needs `segments:read`; changing, `activations:write`."""

from __future__ import annotations

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from activation.experiment_models import Experiment
from activation.experiment_results import experiment_results, results_csv
from activation.experiments import InvalidDesign, clone, start, stop
from api.errors import Conflict
from api.filters import check_query_params
from api.models import Scope
from api.permissions import scoped
from api.serializers.experiments import ExperimentSerializer, ResultsSerializer, results_data
from api.views.common import DETAIL_BACKENDS, ListOptions

ExperimentAccess = scoped(read=Scope.SEGMENTS_READ, write=Scope.ACTIVATIONS_WRITE)


def _experiments():
    return Experiment.objects.select_related("campaign").prefetch_related("target_segments", "suppression_segments")


class ExperimentList(ListOptions, generics.ListCreateAPIView):
    """Experiments on campaign content, newest first. POST creates a draft."""

    queryset = _experiments()
    serializer_class = ExperimentSerializer
    permission_classes = [ExperimentAccess]
    cursor_ordering = "-id"


class ExperimentDetail(generics.RetrieveUpdateAPIView):
    queryset = _experiments()
    serializer_class = ExperimentSerializer
    permission_classes = [ExperimentAccess]
    filter_backends = DETAIL_BACKENDS


def _experiment(pk: int) -> Experiment:
    return generics.get_object_or_404(_experiments(), pk=pk)


def _changed(experiment: Experiment) -> Response:
    return Response(ExperimentSerializer(_experiment(experiment.pk)).data)


@extend_schema(request=None, responses={200: ExperimentSerializer}, summary="Start (or restart) an experiment")
@api_view(["POST"])
@permission_classes([ExperimentAccess])
def start_experiment(request: Request, pk: int) -> Response:
    """Refused (409, naming the field) when a target segment has no variant in the campaign, the
    campaign is not active, or another experiment runs on the campaign."""
    experiment = _experiment(pk)
    try:
        start(experiment)
    except InvalidDesign as error:
        raise Conflict(str(error), field=error.field) from None
    return _changed(experiment)


@extend_schema(request=None, responses={200: ExperimentSerializer}, summary="Stop a running experiment")
@api_view(["POST"])
@permission_classes([ExperimentAccess])
def stop_experiment(request: Request, pk: int) -> Response:
    experiment = _experiment(pk)
    stop(experiment)
    return _changed(experiment)


@extend_schema(
    request=None,
    responses={201: ExperimentSerializer},
    summary="A draft copy with a new assignment, to change a design that has exposures",
)
@api_view(["POST"])
@permission_classes([ExperimentAccess])
def clone_experiment(request: Request, pk: int) -> Response:
    copy = clone(_experiment(pk))
    return Response(ExperimentSerializer(_experiment(copy.pk)).data, status=status.HTTP_201_CREATED)


@extend_schema(
    responses={200: ResultsSerializer},
    summary="Results per arm and segment slice: rates or revenue with intervals, lift against generic, p-values",
)
@api_view(["GET"])
@permission_classes([ExperimentAccess])
def experiment_results_view(request: Request, pk: int) -> Response:
    """Outcomes count from each contact's exposure to the end of its window (and not after now);
    p-values are also given adjusted with Benjamini–Hochberg across slices, metrics and arms;
    `decision` stays provisional until the planned sample has completed its windows."""
    check_query_params(request, set())
    experiment = generics.get_object_or_404(Experiment.objects.select_related("campaign"), pk=pk)
    return Response(ResultsSerializer(results_data(experiment_results(experiment))).data)


@extend_schema(
    responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="Per-arm figures, one row each")},
    summary="Results as CSV: a row per slice, metric and arm",
)
@api_view(["GET"])
@permission_classes([ExperimentAccess])
def experiment_results_csv(request: Request, pk: int) -> HttpResponse:
    check_query_params(request, set())
    experiment = generics.get_object_or_404(Experiment.objects.select_related("campaign"), pk=pk)
    response = HttpResponse(results_csv(experiment_results(experiment)), content_type="text/csv; charset=utf-8")
    name = f"experiment-{experiment.pk}-results-{timezone.localdate():%Y-%m-%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
