"""Propensity models: list them, read one's validation, read a contact's scores and their factors."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from api.filters import check_query_params
from api.models import Scope
from api.permissions import scoped
from contacts.models import Contact
from predictions.explain import contact_scores
from predictions.models import Holdout, ModelVersion, PropensityModel

IMPORTANCE_SHOWN = 20
SUMMARY_FIGURES = ("auc", "auc_low", "auc_high", "band", "base_rate", "positives", "negatives", "precision_at")


def _version(version: ModelVersion | None, *, full: bool) -> dict | None:
    if version is None:
        return None
    data = {
        "number": version.number,
        "state": version.state,
        "is_active": version.is_active,
        "progress": version.progress,
        "message": version.message,
        "train_cutoff": version.train_cutoff,
        "validation_cutoff": version.validation_cutoff,
        "finished_at": version.finished_at,
        "scored_at": version.scored_at,
        "scored_contacts": version.scored_contacts,
        "counts": version.counts,
        "metrics": {k: v for k, v in version.metrics.items() if full or k in SUMMARY_FIGURES},
    }
    if full:
        data["leakage"] = version.leakage
        data["importance"] = version.importance[:IMPORTANCE_SHOWN]
    return data


def _model(model: PropensityModel, *, full: bool) -> dict:
    versions = list(model.versions.defer("artifact"))
    active = next((v for v in versions if v.is_active), None)
    data = {
        "name": model.name,
        "target": model.target,
        "horizon_days": model.horizon_days,
        "algorithm": model.algorithm,
        "holdout": model.holdout,
        "holdout_rule": model.holdout_rule if model.holdout == Holdout.RULE else None,
        "fields": [
            f"metrics.propensity_{model.name}",
            f"metrics.propensity_{model.name}_percentile",
            f"metrics.propensity_{model.name}_tier",
        ],
        "active_version": _version(active, full=full),
    }
    if full:
        data["versions"] = [_version(v, full=False) for v in versions]
    return data


@extend_schema(
    operation_id="models_list",
    responses={200: OpenApiTypes.OBJECT},
    summary="Propensity models with their active version's validation",
)
@api_view(["GET"])
@permission_classes([scoped(read=Scope.SEGMENTS_READ)])
def model_list(request: Request) -> Response:
    check_query_params(request, set())
    return Response({"results": [_model(m, full=False) for m in PropensityModel.objects.all()]})


@extend_schema(
    responses={200: OpenApiTypes.OBJECT}, summary="One propensity model: validation, leakage flags, factors, versions"
)
@api_view(["GET"])
@permission_classes([scoped(read=Scope.SEGMENTS_READ)])
def model_detail(request: Request, name: str) -> Response:
    check_query_params(request, set())
    model = PropensityModel.objects.filter(name=name).first()
    if model is None:
        raise exceptions.NotFound(f"No propensity model named {name!r}.")
    return Response(_model(model, full=True))


@extend_schema(
    responses={200: OpenApiTypes.OBJECT}, summary="A contact's propensity scores and the factors behind each"
)
@api_view(["GET"])
@permission_classes([scoped(read=Scope.CONTACTS_READ)])
def contact_scores_view(request: Request, pk: int) -> Response:
    check_query_params(request, set())
    contact = generics.get_object_or_404(Contact, pk=pk)
    return Response({"contact": contact.pk, "scores": [score.to_dict() for score in contact_scores(contact.pk)]})
