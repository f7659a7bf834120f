"""Governance in the admin: review policies, the review log (read-only) and the review form.

Registered from segments/admin.py. A review is recorded through `reviews.record_review`, which
checks it, freezes the snapshot and carries out the decision in one transaction.
"""

from __future__ import annotations

import csv
import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime

from crmseg_site.access import signed_in_user
from crmseg_site.replicas import replica_reads
from crmseg_site.untrusted_json import UntrustedJSONAdmin
from segments.models import (
    DraftStatus,
    Review,
    ReviewDecision,
    ReviewKind,
    ReviewPolicy,
    ReviewReminder,
    RuleDraft,
    Segment,
    SegmentCategory,
    SegmentStatus,
)
from segments.rule_builder import RuleBuilderWidget, RuleField
from segments.rules.registry import get_fields
from segments.rules.validation import InvalidRule
from segments.rules.wording import compare_rules, segment_names

from .approval import approve_draft, may_approve, rebase_draft, reject_draft, stale_message
from .impact import change_impact
from .report import BadFilter, csv_rows, governance_report, read_filters
from .reviews import record_review
from .snapshot import take_snapshot
from .table import table_rows


@admin.register(ReviewPolicy)
class ReviewPolicyAdmin(admin.ModelAdmin):
    list_display = ["__str__", "category", "segment", "kind", "every", "unit", "enabled", "disabled_reason"]
    list_filter = ["kind", "category", "enabled"]
    list_select_related = ["segment"]
    autocomplete_fields = ["segment"]
    fields = ["category", "segment", "kind", "every", "unit", "enabled", "disabled_reason"]

    def save_model(self, request, obj, form, change) -> None:
        obj.changed_by = request.user
        obj.changed_at = timezone.now()
        super().save_model(request, obj, form, change)


class ReviewForm(forms.Form):
    segment = forms.ModelChoiceField(queryset=Segment.objects.exclude(status=SegmentStatus.ARCHIVED))
    kind = forms.ChoiceField(choices=ReviewKind.choices)
    decision = forms.ChoiceField(choices=ReviewDecision.choices)
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), required=False)
    rule = RuleField(
        required=False,
        widget=RuleBuilderWidget(),
        help_text="Adjust only: the new rule (validated like any edit; the review links the rule version it makes).",
    )
    merged_into = forms.ModelChoiceField(
        queryset=Segment.objects.filter(status=SegmentStatus.ACTIVE),
        required=False,
        label="Merge into",
        help_text="Merge only: the segment that survives.",
    )


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    """Reviews are immutable: listed and shown, recorded through the review form, never edited."""

    list_display = ["reviewed_at", "segment", "kind", "decision", "reviewer", "recorded_by"]
    list_filter = ["kind", "decision"]
    list_select_related = ["segment", "reviewer"]
    search_fields = ["segment__name", "segment__slug", "notes"]
    date_hierarchy = "reviewed_at"
    readonly_fields = (
        "segment",
        "kind",
        "decision",
        "reviewer",
        "recorded_by",
        "reviewed_at",
        "notes",
        "rule_version",
        "merged_into",
        "snapshot_table",
    )
    fields = readonly_fields

    @admin.display(description="snapshot at review time")
    def snapshot_table(self, review: Review) -> str:
        """The frozen figures as the review form showed them, and the rule as it stood."""
        snapshot = dict(review.snapshot or {})
        if not snapshot:
            return "—"
        refreshed = parse_datetime(snapshot.get("last_refreshed_at") or "")
        snapshot["last_refreshed_at"] = formats.localize(timezone.localtime(refreshed)) if refreshed else None
        return render_to_string(
            "admin/segments/_review_snapshot.html",
            {
                "snapshot": snapshot,
                "show_rule": True,
                "rule_json": json.dumps(snapshot.get("rule"), indent=2, ensure_ascii=False),
            },
        )

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        if not self.has_add_permission(request):
            return HttpResponse(status=403)
        initial = {}
        segment = Segment.objects.filter(pk=request.GET.get("segment") or 0).first()
        if segment is not None:
            initial = {"segment": segment, "rule": segment.rule, "kind": request.GET.get("kind", ReviewKind.METRICS)}
        form = ReviewForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                review = record_review(
                    data["segment"],
                    kind=data["kind"],
                    decision=data["decision"],
                    reviewer=request.user,
                    recorded_by=f"user {request.user.get_username()!r} (id {request.user.pk})",
                    notes=data["notes"],
                    new_rule=data["rule"] if data["decision"] == ReviewDecision.ADJUST else None,
                    merge_into=data["merged_into"],
                )
            except ValidationError as error:
                for field, problems in error.message_dict.items():
                    form.add_error(field if field in form.fields else None, problems)
            else:
                message = f"Recorded the {review.get_kind_display().lower()} of {review.segment}: {review.decision}."
                self.message_user(request, message, messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:segments_review_change", args=[review.pk]))
        chosen = form.cleaned_data.get("segment") if form.is_bound and hasattr(form, "cleaned_data") else segment
        ctx = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "segment": chosen,
            "snapshot": take_snapshot(chosen, now=timezone.now()) if chosen else None,
            "title": f"Review {chosen}" if chosen else "Record a review",
        }
        return TemplateResponse(request, "admin/segments/review_form.html", ctx)


@replica_reads()
def governance_page(request: HttpRequest) -> HttpResponse:
    """Every segment with owner, category, status, reviews per kind, next due, overdue and health
    flags; filters, sort, CSV (`?format=csv`). Admin-wrapped (staff only) in segments/admin.py."""
    try:
        filters = read_filters(request.GET)
    except BadFilter as error:
        messages.error(request, str(error))
        return HttpResponseRedirect(reverse("admin:segments_governance"))
    report = governance_report(filters, user=request.user)
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="segment-governance-{timezone.localdate()}.csv"'
        csv.writer(response).writerows(csv_rows(report))
        return response
    query = request.GET.copy()
    query.pop("sort", None)
    ctx = {
        **admin.site.each_context(request),
        "title": "Segment governance",
        "opts": Segment._meta,
        "report": report,
        "table_rows": table_rows(report.rows),
        "filters": filters,
        "kinds": list(ReviewKind),
        "categories": SegmentCategory.choices,
        "owners": get_user_model().objects.filter(owned_segments__isnull=False).distinct().order_by("username"),
        "base_query": query.urlencode(),
        "csv_query": _with(request.GET, format="csv"),
        "reminders": list(
            ReviewReminder.objects.filter(recipient=signed_in_user(request), read_at=None).select_related("segment")[
                :20
            ]
        ),
    }
    return TemplateResponse(request, "admin/segments/governance.html", ctx)


def _with(params, **changes) -> str:
    query = params.copy()
    for key, value in changes.items():
        query[key] = value
    return query.urlencode()


class ReassignForm(forms.Form):
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username"),
        label="New owner",
    )
    role = forms.ChoiceField(choices=[("owner", "as owner"), ("backup_owner", "as backup owner")], initial="owner")


@admin.action(description="Reassign owner… (e.g. when someone leaves)")
def reassign_owner(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset) -> HttpResponse | None:
    """Give the selected segments a new owner (or backup owner) in one update, after a form."""
    form = ReassignForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        role, user = form.cleaned_data["role"], form.cleaned_data["owner"]
        changed = queryset.update(**{role: user}, updated_at=timezone.now())
        label = "owner" if role == "owner" else "backup owner"
        modeladmin.message_user(request, f"{user.get_username()} is now the {label} of {changed} segment(s).")
        return None
    ctx = {
        **modeladmin.admin_site.each_context(request),
        "title": "Reassign owner",
        "opts": Segment._meta,
        "form": form,
        "segments": list(queryset.select_related("owner")),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/segments/reassign_owner.html", ctx)


class DraftStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return DraftStatus.choices

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(RuleDraft)
class RuleDraftAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    """Rule drafts waiting for approval: made by editing a governed segment, decided on their page."""

    list_display = ["__str__", "segment", "author", "created_at", "status", "decided_by"]
    list_filter = [DraftStatusFilter]
    list_select_related = ["segment", "author", "decided_by"]
    search_fields = ["segment__name", "segment__slug", "note"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        draft = RuleDraft.objects.select_related("segment", "author", "decided_by").filter(pk=object_id).first()
        if draft is None:
            return HttpResponseRedirect(reverse("admin:segments_ruledraft_changelist"))
        if not self.has_view_permission(request, draft):
            return HttpResponse(status=403)
        if request.method == "POST":
            return self._decide(request, draft)
        segment, fields = draft.segment, get_fields()
        live = segment.rule if draft.status == DraftStatus.PENDING else draft.base_rule
        names = segment_names(live, draft.rule)
        impact, impact_error = None, ""
        if draft.status == DraftStatus.PENDING:
            try:
                impact = change_impact(segment, rule=draft.rule, parent_id=segment.parent_id, fields=fields)
            except InvalidRule as error:
                impact_error = str(error)
        ctx = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Rule draft #{draft.pk} of {segment}",
            "draft": draft,
            "rows": compare_rules(live, draft.rule, fields=fields, segment_names=names),
            "impact": impact,
            "impact_error": impact_error,
            "stale": stale_message(draft) if draft.status == DraftStatus.PENDING else None,
            "own": draft.author_id == request.user.pk,
            "may_approve": may_approve(request.user),
            "media": forms.Media(css={"all": ["crmseg/governance-admin.css"]}),
        }
        return TemplateResponse(request, "admin/segments/rule_draft.html", ctx)

    def _decide(self, request: HttpRequest, draft: RuleDraft) -> HttpResponse:
        action = request.POST.get("action", "")
        try:
            if action == "approve":
                version = approve_draft(draft, approver=request.user)
                message = f"Published draft #{draft.pk}: {draft.segment} now uses the new rule (version {version.pk})."
            elif action == "reject":
                reject_draft(draft, user=request.user, reason=request.POST.get("reason", ""))
                message = f"Rejected draft #{draft.pk}; the live rule of {draft.segment} stays."
            elif action == "rebase":
                rebase_draft(draft, user=request.user)
                message = f"Rebased draft #{draft.pk} on the live rule; check the diff and impact, then approve."
            else:
                raise ValidationError({"action": f"{action!r} is not approve, reject or rebase."})
        except ValidationError as error:
            for problem in error.messages:
                self.message_user(request, problem, messages.ERROR)
        else:
            self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:segments_ruledraft_change", args=[draft.pk]))


def reminders_read(request: HttpRequest) -> HttpResponse:
    """Mark the signed-in user's review reminders read (POST), back to the governance page."""
    if request.method == "POST":
        mine = ReviewReminder.objects.filter(recipient=signed_in_user(request), read_at=None)
        done = mine.update(read_at=timezone.now())
        messages.success(request, f"Marked {done} reminder(s) read.")
    return HttpResponseRedirect(reverse("admin:segments_governance"))


@admin.register(ReviewReminder)
class ReviewReminderAdmin(admin.ModelAdmin):
    """Review reminders and escalations as sent (written by the daily job only)."""

    list_display = ["created_at", "recipient", "stage", "segment", "kind", "due", "emailed_at", "read_at"]
    list_filter = ["stage", "kind"]
    list_select_related = ["recipient", "segment"]
    search_fields = ["segment__name", "recipient__username", "message"]
    readonly_fields = (
        "segment", "kind", "due", "stage", "recipient", "message", "created_at", "emailed_at", "read_at",
    )  # fmt: skip
    fields = readonly_fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
