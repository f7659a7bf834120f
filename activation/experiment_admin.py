"""Experiment admin: set-up, start / stop / record a send, and the results page with its CSV."""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from activation.experiment_charts import lift_chart
from activation.experiment_models import Experiment, ExperimentStatus, Metric
from activation.experiment_results import experiment_results, results_csv
from activation.experiment_sends import send_rows
from activation.experiments import (
    ExperimentNotRunning,
    InvalidDesign,
    clone,
    record_send,
    start,
    stop,
    target_problems,
)
from crmseg_site.untrusted_json import UntrustedJSONAdmin
from segments.models import SUPPRESSION_KINDS, Segment, SegmentStatus

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class _Exposures(TypedDict):
        exposures_count: int


class Echo:
    """A file-like object whose write() returns the line, for csv.writer in a streamed response."""

    def write(self, value: str) -> str:
        return value


class ExperimentForm(forms.ModelForm):
    secondary_metrics = forms.MultipleChoiceField(
        choices=Metric.choices, required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Experiment
        fields = [
            "name",
            "campaign",
            "target_segments",
            "suppression_segments",
            "specific_percent",
            "generic_percent",
            "holdout_percent",
            "metric",
            "secondary_metrics",
            "window_days",
            "baseline_rate",
            "minimum_effect",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        live = Segment.objects.exclude(status=SegmentStatus.ARCHIVED).order_by("name")
        targets, suppressions = self.fields["target_segments"], self.fields["suppression_segments"]
        assert isinstance(targets, forms.ModelMultipleChoiceField)  # the model's many-to-many fields
        assert isinstance(suppressions, forms.ModelMultipleChoiceField)
        targets.queryset = live.exclude(kind__in=SUPPRESSION_KINDS)
        suppressions.queryset = live.filter(kind__in=SUPPRESSION_KINDS)

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        campaign, targets = data.get("campaign"), data.get("target_segments")
        if campaign is not None and targets is not None and campaign.variants.exists():
            problem = target_problems(campaign.pk, list(targets))
            if problem:
                self.add_error("target_segments", problem)
        return data


@admin.register(Experiment)
class ExperimentAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    form = ExperimentForm
    list_display = ["name", "campaign", "status", "split", "exposure_count", "started_at", "results_link"]
    list_filter = ["status"]
    list_select_related = ["campaign"]
    search_fields = ["name", "campaign__name"]
    filter_horizontal = ["target_segments", "suppression_segments"]
    readonly_fields = ["status", "started_at", "stopped_at", "results_link"]
    actions = ["start_experiments", "stop_experiments", "send_now", "clone_experiments"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(exposures_count=Count("exposures"))

    @admin.display(description="split (specific / generic / hold-out)")
    def split(self, obj: Experiment) -> str:
        return f"{obj.specific_percent} / {obj.generic_percent} / {obj.holdout_percent}"

    @admin.display(description="exposed", ordering="exposures_count")
    def exposure_count(self, obj: WithAnnotations[Experiment, _Exposures]) -> int:
        return obj.exposures_count

    @admin.display(description="results")
    def results_link(self, obj: Experiment) -> str:
        if obj.pk is None:
            return "Save the experiment first."
        return format_html('<a href="{}">Results</a>', reverse("admin:activation_experiment_results", args=[obj.pk]))

    @admin.action(description="Start the selected experiments")
    def start_experiments(self, request: HttpRequest, queryset: QuerySet) -> None:
        for experiment in queryset.select_related("campaign"):
            try:
                start(experiment)
            except InvalidDesign as error:
                self.message_user(request, f"{experiment} was not started: {error}", messages.ERROR)
            else:
                self.message_user(request, f"{experiment} is running.", messages.SUCCESS)

    @admin.action(description="Stop the selected experiments")
    def stop_experiments(self, request: HttpRequest, queryset: QuerySet) -> None:
        for experiment in queryset:
            stop(experiment)
        self.message_user(request, f"Stopped {queryset.count()} experiment(s); results stay readable.")

    @admin.action(description="Record a send to the target segments now (exposes everyone eligible)")
    def send_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        for experiment in queryset:
            try:
                sent = record_send(experiment)
            except ExperimentNotRunning as error:
                self.message_user(request, f"Nothing sent: {error}", messages.ERROR)
            else:
                self.message_user(request, f"{experiment}: {sent:,} contact(s) exposed for the first time.")

    @admin.action(description="Clone the selected experiments (a draft to change the design of)")
    def clone_experiments(self, request: HttpRequest, queryset: QuerySet) -> None:
        copies = [clone(experiment) for experiment in queryset]
        self.message_user(request, "Created draft " + ", ".join(repr(c.name) for c in copies) + ".")

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("<int:object_id>/results/", view(self.results_view), name="activation_experiment_results"),
            path("<int:object_id>/results.csv", view(self.results_csv_view), name="activation_experiment_csv"),
            path("<int:object_id>/send/", view(self.send_view), name="activation_experiment_send"),
            *super().get_urls(),
        ]

    def _experiment(self, request: HttpRequest, object_id: int) -> Experiment | None:
        experiment = get_object_or_404(Experiment.objects.select_related("campaign"), pk=object_id)
        return experiment if self.has_view_permission(request, experiment) else None

    def results_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        experiment = self._experiment(request, object_id)
        if experiment is None:
            return HttpResponse(status=403)
        results = experiment_results(experiment)
        ctx = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": experiment,
            "title": f"Results: {experiment}",
            "experiment": experiment,
            "results": results,
            "metric_labels": dict(Metric.choices),
            "chart": lift_chart(results),
        }
        return TemplateResponse(request, "admin/activation/experiment/results.html", ctx)

    def results_csv_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        experiment = self._experiment(request, object_id)
        if experiment is None:
            return HttpResponse(status=403)
        response = HttpResponse(results_csv(experiment_results(experiment)), content_type="text/csv; charset=utf-8")
        name = f"experiment-{experiment.pk}-results-{timezone.localdate():%Y-%m-%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def send_view(self, request: HttpRequest, object_id: int) -> HttpResponseBase:
        """POST: record a send (first exposures of everyone eligible) and download the send list."""
        experiment = get_object_or_404(Experiment.objects.select_related("campaign"), pk=object_id)
        if request.method != "POST" or not self.has_change_permission(request, experiment):
            return HttpResponse(status=403 if request.method == "POST" else 405)
        try:
            record_send(experiment)
        except ExperimentNotRunning as error:
            self.message_user(request, f"Nothing sent: {error}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:activation_experiment_results", args=[experiment.pk]))
        writer = csv.writer(Echo())
        response = StreamingHttpResponse(
            (writer.writerow(row) for row in send_rows(experiment)), content_type="text/csv; charset=utf-8"
        )
        name = f"experiment-{experiment.pk}-send-list-{timezone.localdate():%Y-%m-%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def has_delete_permission(self, request: HttpRequest, obj: Experiment | None = None) -> bool:
        # Exposed experiments keep their record: stop them instead.
        if obj is not None and obj.status != ExperimentStatus.DRAFT:
            return False
        return super().has_delete_permission(request, obj)
