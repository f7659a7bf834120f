"""Propensity models in the admin: define them, train and score on demand, and a page per model
with its validation (figures, lift and calibration charts, leakage flags, factor importance) and
the state of every version."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django_q.tasks import async_task

from crmseg_site.untrusted_json import UntrustedJSONAdmin
from predictions.charts import calibration_chart, lift_chart
from predictions.models import ModelVersion, PropensityModel, VersionState
from predictions.targets import target_errors
from predictions.tasks import enqueue_training
from predictions.training import CannotActivate, TrainingBusy, activate_version

IMPORTANCE_SHOWN = 15


class PropensityModelForm(forms.ModelForm):
    class Meta:
        model = PropensityModel
        fields = [
            "name",
            "target",
            "horizon_days",
            "algorithm",
            "holdout",
            "holdout_rule",
            "label_rule",
            "label_field",
            "expand_min_purchase",
            "churn_on_inactivity",
            "volatile_fields",
            "retrain_days",
        ]

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        candidate = PropensityModel(
            **{k: v for k, v in cleaned.items() if k in {f.name for f in PropensityModel._meta.fields}}
        )
        for field, message in target_errors(candidate).items():
            self.add_error(field if field in self.fields else None, message)
        return cleaned


class VersionInline(admin.TabularInline):
    model = ModelVersion
    readonly_fields = ("number", "state", "is_active", "progress", "auc", "created_at", "finished_at", "message")
    fields = readonly_fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="AUC")
    def auc(self, version: ModelVersion) -> str:
        m = version.metrics
        return f"{m['auc']:.3f} ({m['auc_low']:.3f}–{m['auc_high']:.3f})" if m else "—"


@admin.register(PropensityModel)
class PropensityModelAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    form = PropensityModelForm
    list_display = ["name", "target", "horizon_days", "algorithm", "active", "auc", "report_link"]
    inlines = [VersionInline]
    actions = ["train_selected", "score_selected"]

    @admin.display(description="Active version")
    def active(self, model: PropensityModel) -> str:
        version = model.active_version
        return f"v{version.number}" if version else "—"

    @admin.display(description="Validation AUC")
    def auc(self, model: PropensityModel) -> str:
        version = model.active_version
        if not version:
            return "—"
        m = version.metrics
        return f"{m['auc']:.3f} ({m['band']})"

    @admin.display(description="Report")
    def report_link(self, model: PropensityModel) -> str:
        return format_html(
            '<a href="{}">Model page</a>', reverse("admin:predictions_propensitymodel_report", args=[model.pk])
        )

    @admin.action(description="Train the selected models now")
    def train_selected(self, request: HttpRequest, queryset) -> None:
        for model in queryset:
            self._train(request, model)

    @admin.action(description="Score contacts with the selected models now")
    def score_selected(self, request: HttpRequest, queryset) -> None:
        for model in queryset:
            async_task("predictions.tasks.score_task", model.pk, group="predictions")
        self.message_user(request, f"Scoring queued for {queryset.count()} model(s).", messages.SUCCESS)

    def _activate(self, request: HttpRequest, model: PropensityModel, number: str) -> None:
        version = model.versions.filter(number=int(number)).first() if number.isdigit() else None
        if version is None:
            self.message_user(request, f"Model {model.name} has no version {number}.", messages.ERROR)
            return
        try:
            replaced = activate_version(version, by=request.user)
        except CannotActivate as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
            return
        transaction.on_commit(lambda: async_task("predictions.tasks.score_task", model.pk, group="predictions"))
        instead = f" instead of version {replaced.number}" if replaced else ""
        self.message_user(
            request, f"Version {version.number} of {model.name} is active{instead}; scoring queued.", messages.SUCCESS
        )

    def _train(self, request: HttpRequest, model: PropensityModel) -> None:
        try:
            version = enqueue_training(model, user=request.user)
        except TrainingBusy as busy:
            self.message_user(request, str(busy), messages.WARNING)
            return
        self.message_user(request, f"Training of {model.name} queued as version {version.number}.", messages.SUCCESS)

    def get_urls(self):
        report = self.admin_site.admin_view(self.report_view)
        return [path("<int:model_id>/report/", report, name="predictions_propensitymodel_report"), *super().get_urls()]

    def report_view(self, request: HttpRequest, model_id: int) -> HttpResponse:
        model = get_object_or_404(PropensityModel, pk=model_id)
        if not self.has_view_permission(request, model):
            return HttpResponse(status=403)
        if request.method == "POST":
            if not self.has_change_permission(request, model):
                return HttpResponse(status=403)
            if request.POST.get("action") == "score":
                async_task("predictions.tasks.score_task", model.pk, group="predictions")
                self.message_user(request, f"Scoring of {model.name} queued.", messages.SUCCESS)
            elif request.POST.get("action") == "activate":
                self._activate(request, model, request.POST.get("version", ""))
            else:
                self._train(request, model)
            return HttpResponseRedirect(request.path)
        versions = list(model.versions.defer("artifact"))
        shown = next((v for v in versions if v.is_active), None) or next((v for v in versions if v.metrics), None)
        ctx = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "model": model,
            "holdout_rule_json": json.dumps(model.holdout_rule, ensure_ascii=False),
            "title": f"Propensity model: {model.name}",
            "versions": versions,
            "shown": shown,
            "running": next((v for v in versions if v.state in (VersionState.QUEUED, VersionState.RUNNING)), None),
            "fields": [
                f"metrics.propensity_{model.name}",
                f"metrics.propensity_{model.name}_percentile",
                f"metrics.propensity_{model.name}_tier",
            ],
            "top_segment_url": _top_segment_url(model),
        }
        if shown and shown.metrics:
            m = shown.metrics
            ctx.update(
                metrics=m,
                precision=[(k, v) for k, v in m["precision_at"].items()],
                lift_svg=lift_chart(m["lift"]),
                calibration_svg=calibration_chart(m["calibration"]),
                importance=_importance(shown),
            )
        return TemplateResponse(request, "admin/predictions/report.html", ctx)


def _importance(version: ModelVersion) -> list[dict]:
    top = version.importance[:IMPORTANCE_SHOWN]
    largest = max([item["weight"] for item in top] + [1e-9])
    return [{**item, "width": round(100 * item["weight"] / largest, 1)} for item in top]


def _top_segment_url(model: PropensityModel) -> str:
    """The segment form, filled in with "top 20% likely to <name>" (one click to save)."""
    rule = {"field": f"metrics.propensity_{model.name}", "op": "top_percent", "value": 20}
    query = urlencode(
        {
            "name": f"Top 20% likely to {model.name}",
            "slug": f"top-20-{model.name}".replace("_", "-"),
            "rule": json.dumps(rule),
        }
    )
    return f"{reverse('admin:segments_segment_add')}?{query}"
