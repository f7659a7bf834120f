"""Admin for automations, their runs (status, attempts, errors, retry), sequences and notifications."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from activation.automation_models import AutomationRunQuerySet
from activation.automations import process_pending
from activation.models import (
    Automation,
    AutomationAction,
    AutomationRun,
    Enrolment,
    Notification,
    NurtureSequence,
)

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class _RunCounts(TypedDict):
        done: int
        failed: int
        skipped: int

    class _Active(TypedDict):
        active: int


class AutomationActionInline(admin.TabularInline):
    model = AutomationAction
    extra = 1
    fields = ["position", "kind", "sequence", "score_delta", "destination"]


@admin.register(Automation)
class AutomationAdmin(admin.ModelAdmin):
    list_display = ["name", "trigger", "trigger_segment", "enabled", "runs_done", "runs_failed", "runs_skipped"]
    list_filter = ["enabled", "trigger"]
    list_select_related = ["trigger_segment"]
    search_fields = ["name", "trigger_segment__name"]
    filter_horizontal = ["suppression_segments"]
    readonly_fields = ["starts_after_change", "created_at", "updated_at"]
    inlines = [AutomationActionInline]
    actions = ["process_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                done=Count("runs", filter=Q(runs__status="done")),
                failed=Count("runs", filter=Q(runs__status="failed")),
                skipped=Count("runs", filter=Q(runs__status="skipped")),
            )
        )

    @admin.display(description="done", ordering="done")
    def runs_done(self, obj: WithAnnotations[Automation, _RunCounts]) -> int:
        return obj.done

    @admin.display(description="failed", ordering="failed")
    def runs_failed(self, obj: WithAnnotations[Automation, _RunCounts]) -> int:
        return obj.failed

    @admin.display(description="skipped", ordering="skipped")
    def runs_skipped(self, obj: WithAnnotations[Automation, _RunCounts]) -> int:
        return obj.skipped

    @admin.action(description="Process pending changes now (all automations)")
    def process_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        outcome = process_pending()
        level = messages.WARNING if outcome.failed else messages.SUCCESS
        self.message_user(
            request,
            f"{outcome.discovered} new changes, {outcome.done} runs done, "
            f"{outcome.skipped} suppressed, {outcome.failed} failed.",
            level,
        )


class ErrorFilter(admin.SimpleListFilter):
    title = "retries"
    parameter_name = "retries"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("waiting", "Waiting for a retry"), ("gave_up", "Gave up (retry by hand)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "waiting":
            return queryset.filter(status="failed", next_attempt_at__isnull=False)
        if self.value() == "gave_up":
            return queryset.filter(status="failed", next_attempt_at__isnull=True)
        return queryset


@admin.register(AutomationRun)
class AutomationRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "automation",
        "contact",
        "status",
        "attempts",
        "claimed_by",
        "heartbeat_at",
        "last_error",
        "next_attempt_at",
        "finished_at",
    ]
    list_filter = ["status", ErrorFilter, "automation"]
    list_select_related = ["automation", "contact"]
    search_fields = ["contact__email", "automation__name", "last_error"]
    actions = ["retry_runs"]

    def get_readonly_fields(self, request: HttpRequest, obj: AutomationRun | None = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Retry selected failed runs now")
    def retry_runs(self, request: HttpRequest, queryset: AutomationRunQuerySet) -> None:
        count = queryset.retry()
        self.message_user(request, f"{count} failed run{'s' if count != 1 else ''} queued again.", messages.SUCCESS)


@admin.register(NurtureSequence)
class NurtureSequenceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "active_enrolments"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(active=Count("enrolments", filter=Q(enrolments__status="active")))

    @admin.display(description="active enrolments", ordering="active")
    def active_enrolments(self, obj: WithAnnotations[NurtureSequence, _Active]) -> int:
        return obj.active


@admin.register(Enrolment)
class EnrolmentAdmin(admin.ModelAdmin):
    list_display = ["contact", "sequence", "status", "enrolled_at", "automation"]
    list_filter = ["status", "sequence"]
    list_select_related = ["contact", "sequence", "automation"]
    search_fields = ["contact__email"]
    raw_id_fields = ["contact"]


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["recipient", "message", "created_at", "read_at"]
    list_filter = ["read_at"]
    list_select_related = ["recipient"]
    search_fields = ["message", "recipient__username"]
    raw_id_fields = ["contact", "run"]
