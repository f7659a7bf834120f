"""Admin for destinations, activations and export runs (Operations staff configure exports here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import FileResponse, Http404, HttpRequest
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from activation.exports import start_run
from activation.models import (
    CSV_COLUMNS,
    Activation,
    Destination,
    ExportRun,
    RunStatus,
    describe_user,
    may_mark_internal,
)
from activation.tasks import enqueue_export
from crmseg_site.untrusted_json import UntrustedJSONAdmin

if TYPE_CHECKING:
    from datetime import datetime

    from django_stubs_ext import WithAnnotations

    class _LastRun(TypedDict):
        last_run_status: str | None
        last_run_at: datetime | None


class DestinationForm(forms.ModelForm):
    # Write-only: the stored secret is never rendered back; leaving the box empty keeps it.
    secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhook signing secret. Never shown again after saving; leave empty to keep the current one.",
    )

    url = forms.URLField(
        required=False, max_length=500, assume_scheme="https", help_text="Webhook only: HTTPS endpoint"
    )

    class Meta:
        model = Destination
        fields = [
            "name",
            "kind",
            "min_audience_size",
            "csv_columns",
            "remove_gmail_dots",
            "linkedin_plain_email",
            "url",
            "secret",
            "batch_size",
            "is_internal",
        ]
        help_texts = {
            "csv_columns": 'CSV only: a JSON list, e.g. ["email", "first_name"]. Allowed: ' + ", ".join(CSV_COLUMNS)
        }

    def clean_csv_columns(self) -> list:
        # An empty box means "no columns" (not NULL, which the column does not allow).
        columns = self.cleaned_data["csv_columns"]
        return [] if columns is None else columns

    def clean_secret(self) -> str:
        return self.cleaned_data["secret"] or (self.instance.secret if self.instance.pk else "")


@admin.register(Destination)
class DestinationAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    form = DestinationForm
    # Internal destinations show who marked them (blank for ones marked before that was recorded).
    list_display = ["name", "kind", "min_audience", "has_secret", "is_internal", "internal_set_by", "updated_at"]
    list_filter = ["kind", "is_internal"]
    search_fields = ["name", "url"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "min_audience_size"]}),
        ("CSV file", {"fields": ["csv_columns"]}),
        ("Google Customer Match", {"fields": ["remove_gmail_dots"]}),
        ("LinkedIn Matched Audience", {"fields": ["linkedin_plain_email"]}),
        ("Webhook", {"fields": ["url", "secret", "batch_size", "is_internal", "internal_set_by", "internal_set_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Destination | None = None) -> list[str]:
        # Letting a webhook reach our own network is a superuser's decision: others can neither
        # set the switch nor move an internal destination to another URL or kind.
        readonly = ["internal_set_by", "internal_set_at"]
        if not may_mark_internal(request.user):
            readonly.append("is_internal")
            if obj is not None and obj.is_internal:
                readonly += ["kind", "url"]
        return readonly

    def save_model(self, request: HttpRequest, obj: Destination, form, change: bool) -> None:
        previous = Destination.objects.filter(pk=obj.pk).first() if change else None
        if obj.opens_internal_network(previous=previous):
            obj.record_internal_change(by=describe_user(request.user))
        super().save_model(request, obj, form, change)

    @admin.display(description="minimum audience")
    def min_audience(self, obj: Destination) -> int:
        return obj.effective_min_audience_size()

    @admin.display(boolean=True, description="secret set")
    def has_secret(self, obj: Destination) -> bool:
        return bool(obj.secret)


@admin.register(Activation)
class ActivationAdmin(admin.ModelAdmin):
    list_display = ["name", "segment", "destination", "mode_short", "when_run", "last_run"]
    list_filter = ["enabled", "mode", "destination__kind"]
    list_select_related = ["segment", "destination"]
    search_fields = ["name", "segment__name", "destination__name"]
    filter_horizontal = ["suppression_segments"]
    actions = ["export_now"]

    @admin.display(description="mode", ordering="mode")
    def mode_short(self, obj: Activation) -> str:
        return obj.mode

    @admin.display(description="runs", ordering="schedule_minutes")
    def when_run(self, obj: Activation) -> str:
        if not obj.enabled:
            return "disabled"
        return f"every {obj.schedule_minutes} min" if obj.schedule_minutes else "manual"

    @admin.display(description="last run")
    def last_run(self, obj: WithAnnotations[Activation, _LastRun]) -> str:
        return f"{obj.last_run_status} {obj.last_run_at:%Y-%m-%d %H:%M}" if obj.last_run_at else "never"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Activation]:
        latest = ExportRun.objects.filter(activation=OuterRef("pk")).order_by("-created_at", "-id")
        return (
            super()
            .get_queryset(request)
            .annotate(last_run_status=Subquery(latest.values("status")[:1]))
            .annotate(last_run_at=Subquery(latest.values("created_at")[:1]))
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Activation]) -> None:
        # One by one so each activation's Schedule row goes with it (Activation.delete).
        for activation in queryset:
            activation.delete()

    @admin.action(description="Export now")
    def export_now(self, request: HttpRequest, queryset: QuerySet[Activation]) -> None:
        started = []
        for activation in queryset.select_related("segment"):
            if not activation.enabled:
                self.message_user(request, f"{activation} is disabled; enable it to export.", messages.WARNING)
                continue
            with transaction.atomic():
                run = start_run(activation, requested_by=request.user)
                enqueue_export(run)
            started.append(f"{activation} (run {run.pk})")
        if started:
            self.message_user(request, "Export queued: " + ", ".join(started), messages.SUCCESS)


@admin.register(ExportRun)
class ExportRunAdmin(admin.ModelAdmin):
    # Seven columns that fit 1,400 px; attempts, worker, checksums and the full breakdown are on
    # the run's page.
    list_display = ["run", "state", "mode_short", "when", "audience", "changes", "files"]
    list_filter = ["status", "mode", "activation__destination__kind"]
    list_select_related = ["activation"]
    search_fields = ["activation__name", "error"]
    # The run's page: every field, the breakdown (not its JSON) right after the counts.
    readonly_fields = (
        *(
            name
            for field in ExportRun._meta.fields
            if field.name != "held_back"
            for name in ([field.name, "held_back_causes"] if field.name == "removed_count" else [field.name])
        ),
        "download",
    )
    fields = readonly_fields
    actions = ["retry"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="status", ordering="status")
    def state(self, run: ExportRun) -> str:
        """The status; a running run says since when and on which worker, a failed one when it is tried again."""
        if run.status == RunStatus.RUNNING and run.started_at:
            since = timezone.localtime(run.started_at)
            return format_html("running since {} on {}", f"{since:%H:%M:%S}", run.worker)
        if run.status == RunStatus.FAILED:
            after = f"retry at {timezone.localtime(run.retry_at):%H:%M:%S}" if run.retry_at else "not retried"
            return format_html('<span style="color: #ba2121">failed</span> ({})', after)
        return run.get_status_display()

    @admin.display(description="run", ordering="-id")
    def run(self, run: ExportRun) -> str:
        return format_html('#{} <div class="help">{}</div>', run.pk, run.activation)

    @admin.display(description="created / finished", ordering="created_at")
    def when(self, run: ExportRun) -> str:
        created = f"{timezone.localtime(run.created_at):%Y-%m-%d %H:%M}"
        finished = f"{timezone.localtime(run.finished_at):%H:%M:%S}" if run.finished_at else "—"
        return format_html('{}<div class="help">finished {}</div>', created, finished)

    @admin.display(description="members → exported")
    def audience(self, run: ExportRun) -> str:
        held = run.suppressed_count + run.skipped_count
        return format_html(
            '{} → {}<div class="help">{} held back</div>',
            f"{run.members_count:,}",
            f"{run.exported_count:,}",
            f"{held:,}",
        )

    @admin.display(description="held back, by cause")
    def held_back_causes(self, run: ExportRun) -> str:
        """One line per suppression list and per cause that held someone back, with its count; a
        member held back for two causes counts under the first listed (activation/held_back.py)."""
        if not run.held_back:
            return "—"
        rows = format_html_join(
            "",
            '<tr><td>{}</td><td style="text-align: right">{}</td></tr>',
            ((c["label"], f"{c['count']:,}") for c in run.held_back if c["count"] or c.get("segment_id")),
        )
        return format_html('<table class="held-back">{}</table>', rows)

    @admin.display(description="mode", ordering="mode")
    def mode_short(self, run: ExportRun) -> str:
        return run.mode

    @admin.display(description="files")
    def files(self, run: ExportRun) -> str:
        """Short links ("added", "removed"); the full names are on the run's page."""
        links = [
            format_html(
                '<a href="{}" title="{}">{}</a>',
                reverse("admin:activation_exportrun_download", args=[run.pk, which]),
                Path(name).name,
                which,
            )
            for which, name in (("added", run.file_path), ("removed", run.removed_file_path))
            if name
        ]
        return format_html_join(" · ", "{}", ((link,) for link in links)) if links else "-"

    @admin.display(description="added / removed")
    def changes(self, run: ExportRun) -> str:
        return f"+{run.added_count:,} / −{run.removed_count:,}"

    def has_change_permission(self, request: HttpRequest, obj: ExportRun | None = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: ExportRun) -> None:
        obj.delete_files()
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ExportRun]) -> None:
        for run in queryset:
            run.delete_files()
        super().delete_queryset(request, queryset)

    def get_urls(self):
        download = self.admin_site.admin_view(self.download_view)
        return [
            path("<int:run_id>/download/<str:which>/", download, name="activation_exportrun_download"),
            *super().get_urls(),
        ]

    @admin.display(description="file")
    def download(self, obj: ExportRun) -> str:
        links = []
        for which, name in (("added", obj.file_path), ("removed", obj.removed_file_path)):
            if name:
                url = reverse("admin:activation_exportrun_download", args=[obj.pk, which])
                links.append(format_html('<a href="{}">{}</a>', url, Path(name).name))
        return format_html(" ".join(["{}"] * len(links)), *links) if links else "-"

    def download_view(self, request: HttpRequest, run_id: int, which: str) -> FileResponse:
        if not self.has_view_permission(request):
            raise Http404("No such export file")
        run = ExportRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED).first()
        name = {"added": run.file_path, "removed": run.removed_file_path}.get(which, "") if run else ""
        if not name:
            raise Http404("No such export file")
        root = Path(settings.MEDIA_ROOT).resolve()
        file = (root / name).resolve()
        if root not in file.parents or not file.is_file():
            raise Http404("No such export file")
        return FileResponse(file.open("rb"), as_attachment=True, filename=file.name, content_type="text/csv")

    @admin.action(description="Run again (failed runs only)")
    def retry(self, request: HttpRequest, queryset: QuerySet[ExportRun]) -> None:
        failed = list(queryset.filter(status=RunStatus.FAILED))
        for run in failed:
            enqueue_export(run)
        self.message_user(request, f"Queued {len(failed)} failed run(s) again; others were left alone.")
