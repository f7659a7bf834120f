"""The segment page's "Export…": the segment's activations, their last runs and why members were
held back, and a "Run now" per activation (Operations staff with the right to change activations)."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from activation.exports import start_run
from activation.models import Activation, ExportRun
from activation.tasks import enqueue_export
from crmseg_site.access import staff_required
from segments.models import Segment

RUNS_SHOWN = 3


def _may_run(user) -> bool:
    return user.has_perm("activation.change_activation")


@staff_required
def segment_exports(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=segment_id)
    recent = ExportRun.objects.order_by("-created_at", "-id")
    activations = list(
        Activation.objects.filter(segment=segment)
        .select_related("destination")
        .prefetch_related("suppression_segments", Prefetch("runs", queryset=recent, to_attr="all_runs"))
        .order_by("name")
    )
    ctx = {
        "section": "segments",
        "segment": segment,
        "activations": [(activation, activation.all_runs[:RUNS_SHOWN]) for activation in activations],
        "may_run": _may_run(request.user),
        "add_url": reverse("admin:activation_activation_add") + f"?segment={segment.pk}",
    }
    return render(request, "activation/segment_exports.html", ctx)


@require_POST
@staff_required
def run_now(request: HttpRequest, activation_id: int) -> HttpResponse:
    activation = get_object_or_404(Activation.objects.select_related("segment"), pk=activation_id)
    if not _may_run(request.user):
        raise PermissionDenied("Running an export needs the right to change activations.")
    back = redirect("activation:segment-exports", segment_id=activation.segment_id)
    if not activation.enabled:
        messages.warning(request, f"{activation} is disabled; enable it in the admin to export.")
        return back
    with transaction.atomic():
        run = start_run(activation, requested_by=request.user)
        enqueue_export(run)
    messages.success(request, f"Export run #{run.pk} of {activation} is queued; this page shows it when it is done.")
    return back
