"""Admin for segments: list with refresh health, a validated change form, guarded deletes,
read-only history, and actions to refresh now and to edit static members.

Every write goes through segments.editing / segments.static, never straight to the model.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import pluralize
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import Truncator

from contacts.paging import LargeTablePaginator
from crmseg_site.access import signed_in_user
from segments import (
    boundaries_admin,
    coverage_admin,
    list_admin,  # noqa: F401 - registers the contact list's "Add to static list…" actions
)
from segments.editing import (
    BOOKKEEPING_FIELDS,
    DEFINITION_FIELDS,
    check_segment,
    delete_segment,
    segment_dependants,
)
from segments.governance import admin as governance_admin
from segments.governance.approval import note_error, save_or_propose
from segments.governance.rule_history import VersionDiff, version_diffs
from segments.history import detail_text
from segments.models import (
    ListEdit,
    Membership,
    MembershipChange,
    RefreshStatus,
    RuleVersion,
    Segment,
    SegmentQuerySet,
)
from segments.rule_builder import RuleBuilderWidget, RuleField
from segments.rules.registry import get_fields
from segments.static import (
    add_static_members,
    read_member_file,
    remove_static_members,
    resolve_contacts,
    retry_list_edit,
    split_tokens,
)
from segments.tasks import enqueue_refresh_segment

MEMBERS_SHOWN = 10


class ApprovalSelect(forms.NullBooleanSelect):
    def __init__(self, attrs=None) -> None:
        super().__init__(attrs)
        self.choices = [
            ("unknown", "Automatic: while it feeds an enabled activation or automation"),
            ("true", "Yes, always"),
            ("false", "No"),
        ]


class SegmentForm(forms.ModelForm):
    rule = RuleField(
        required=False,
        widget=RuleBuilderWidget(),
        help_text='Rule language JSON, e.g. {"all": [{"field": "lead_score", "op": "gte", "value": 50}]}. '
        "Errors name their JSON path (all[1].op). Static segments have no rule.",
    )

    change_note = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Why the rule changes; kept with the rule version in the rule history.",
    )

    class Meta:
        model = Segment
        fields = [name for name in DEFINITION_FIELDS if name not in BOOKKEEPING_FIELDS]
        widgets = {"requires_approval": ApprovalSelect}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and self.instance.is_rule_based:
            self.fields["rule"].widget.segment_id = self.instance.pk

    class Media:
        # The add form hides the rule builder and parent when a static kind is chosen.
        js = ["crmseg/segment-kind.js"]

    def full_clean(self) -> None:
        """Django's checks build and validate the instance; then the segment's own (check_segment)."""
        super().full_clean()
        if not self.is_bound or (self.empty_permitted and not self.has_changed()) or self.errors:
            return
        try:
            check_segment(self.instance)
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
            return
        stored = Segment.objects.filter(pk=self.instance.pk).first() if self.instance.pk else None
        if stored is not None:
            changed = stored.rule != self.instance.rule
            if message := note_error(stored, rule_changed=changed, note=self.cleaned_data.get("change_note", "")):
                self.add_error("change_note", message)


class RefreshStatusFilter(admin.SimpleListFilter):
    title = "last refresh"
    parameter_name = "refresh"

    def lookups(self, request, model_admin):
        return [("running", "Running now"), ("failed", "Failed"), ("ok", "OK"), ("never", "Never refreshed")]

    def queryset(self, request, queryset):
        if self.value() == "running":
            return queryset.filter(refresh_running_since__isnull=False)
        return queryset.filter(last_refresh_status=self.value()) if self.value() else queryset


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    # Seven columns that fit 1,400 px: the slug goes under the name, the refresh's time, duration
    # and error into one column; everything else is on the change page.
    list_display = ["segment", "kind", "category", "status", "owner", "size", "refresh_state"]
    list_filter = [RefreshStatusFilter, "kind", "status", "category", "is_global"]
    list_select_related = ["owner", "parent"]
    search_fields = ["name", "slug", "description"]
    autocomplete_fields = ["parent", "owner", "backup_owner"]
    prepopulated_fields = {"slug": ["name"]}
    actions = ["refresh_now", "edit_static_members", governance_admin.reassign_owner]
    readonly_fields = [
        "size",
        "members_link",
        "last_refresh_status",
        "last_refresh_error",
        "last_refreshed_at",
        "last_refresh_now",
        "last_refresh_duration_ms",
        "last_refresh_added",
        "last_refresh_removed",
        "refresh_running_since",
        "refresh_heartbeat_at",
        "refresh_worker",
        "refresh_failures",
        "refresh_retry_at",
        "rule_edited_at",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "slug",
                    "description",
                    "kind",
                    "is_global",
                    "category",
                    "status",
                    "owner",
                    "backup_owner",
                    "requires_approval",
                ]
            },
        ),
        ("Definition", {"fields": ["parent", "rule", "change_note"]}),
        (
            "Membership and last refresh",
            {
                "fields": [
                    "size",
                    "members_link",
                    "last_refresh_status",
                    "last_refresh_error",
                    ("last_refreshed_at", "last_refresh_duration_ms"),
                    ("last_refresh_added", "last_refresh_removed"),
                    "last_refresh_now",
                    ("refresh_running_since", "refresh_heartbeat_at", "refresh_worker"),
                    ("refresh_failures", "refresh_retry_at"),
                    "rule_edited_at",
                    ("created_at", "updated_at"),
                ]
            },
        ),
    ]

    @admin.display(description="name", ordering="name")
    def segment(self, segment: Segment) -> str:
        return format_html('{}<div class="help">{}</div>', segment.name, segment.slug)

    @admin.display(description="last refresh", ordering="last_refreshed_at")
    def refresh_state(self, segment: Segment) -> str:
        """OK / failed / never with when and how long, or the refresh running now; a failed one says
        when it is tried again and the start of its error."""
        if segment.refresh_running_since is not None:
            since = timezone.localtime(segment.refresh_running_since)
            return format_html("running since {} on {}", f"{since:%H:%M:%S}", segment.refresh_worker)
        state = segment.get_last_refresh_status_display()
        when = ""
        if segment.last_refreshed_at is not None:
            when = f"{timezone.localtime(segment.last_refreshed_at):%Y-%m-%d %H:%M}"
            if segment.last_refresh_duration_ms is not None:
                when += f" · {segment.last_refresh_duration_ms:,} ms"
        if segment.last_refresh_status == RefreshStatus.FAILED:
            retry = segment.refresh_retry_at
            after = f"retry at {timezone.localtime(retry):%H:%M:%S}" if retry else "no more automatic retries"
            error = Truncator(segment.last_refresh_error).chars(120)
            return format_html(
                '<span style="color: #ba2121">{}</span> ({} in a row; {})<div class="help">{}</div>',
                state,
                segment.refresh_failures,
                after,
                error,
            )
        return format_html('{}<div class="help">{}</div>', state, when)

    def get_fieldsets(self, request, obj=None):
        """A static list's form shows its members and how to change them, never a rule or parent."""
        if obj is None or not obj.is_static:
            return self.fieldsets
        return [
            self.fieldsets[0],
            ("Members (added and removed by hand)", {"fields": ["members_preview"]}),
            self.fieldsets[2],
        ]

    def get_readonly_fields(self, request, obj=None):
        # The kind is chosen once: static and rule segments do not turn into each other.
        readonly = [*self.readonly_fields, "members_preview"]
        return [*readonly, "kind"] if obj is not None else readonly

    @admin.display(description="members")
    def members_preview(self, segment: Segment) -> str:
        """The latest members, with the links to all of them and to the add/remove page."""
        if segment.pk is None:
            return ""
        latest = list(
            Membership.objects.filter(segment=segment)
            .select_related("contact")
            .order_by("-joined_at", "-id")[:MEMBERS_SHOWN]
        )
        edit = reverse("admin:segments_segment_static_members", args=[segment.pk])
        rows = format_html_join(
            "",
            "<li>{} <span class='help'>joined {}</span></li>",
            ((m.contact.email, f"{timezone.localtime(m.joined_at):%Y-%m-%d %H:%M}") for m in latest),
        )
        listing = format_html("<ul>{}</ul>", rows) if latest else format_html("<p>{}</p>", "No members yet.")
        return format_html(
            '<p><a class="button" href="{}" id="edit-members">Add or remove members</a> '
            "(type e-mails or ids, or upload a CSV)</p><p>{} member(s); the latest:</p>{}",
            edit,
            segment.size,
            listing,
        )

    @admin.display(description="members")
    def members_link(self, segment: Segment) -> str:
        if segment.pk is None:
            return ""
        url = reverse("admin:segments_membership_changelist") + "?" + urlencode({"segment__id__exact": segment.pk})
        page = reverse("segments-detail", args=[segment.pk])
        links = format_html('<a href="{}">{} members</a> · <a href="{}">segment page</a>', url, segment.size, page)
        review = reverse("admin:segments_review_add") + "?" + urlencode({"segment": segment.pk})
        links = format_html('{} · <a href="{}">record a review</a>', links, review)
        if segment.is_static:
            edit = reverse("admin:segments_segment_static_members", args=[segment.pk])
            links = format_html('{} · <a href="{}">add or remove members</a>', links, edit)
        return links

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deletes go one by one, through the dependency check
        return actions

    def save_model(self, request, obj, form, change) -> None:
        draft = save_or_propose(obj, user=request.user, note=form.cleaned_data.get("change_note", ""))
        if draft is not None:
            request.rule_draft = draft  # response_change sends the author to it

    def response_add(self, request, obj, post_url_continue=None):
        return self._to_segment_page(request, obj) or super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        draft = getattr(request, "rule_draft", None)
        if draft is not None:
            self.message_user(
                request,
                f"The rule change of {obj} waits for approval by another Operations user (draft #{draft.pk}); "
                "the live rule stays until then. Other changes are saved.",
                messages.WARNING,
            )
            return HttpResponseRedirect(reverse("admin:segments_ruledraft_change", args=[draft.pk]))
        return self._to_segment_page(request, obj) or super().response_change(request, obj)

    def _to_segment_page(self, request, obj) -> HttpResponse | None:
        """After "Save" of a rule segment: its page, which says the build is queued and shows its result."""
        if "_continue" in request.POST or "_addanother" in request.POST or not obj.is_rule_based:
            return None
        # Before the commit that queues the build (the admin's transaction ends after this).
        query = urlencode({"saved": timezone.now().isoformat()})
        return HttpResponseRedirect(f"{reverse('segments-detail', args=[obj.pk])}?{query}")

    def save_related(self, request, form, formsets, change) -> None:
        """References are kept in step with the rule by save_segment; nothing else is related."""

    def get_deleted_objects(self, objs, request):
        """Name what goes (without listing every membership row) and what stands in the way.

        Memberships, history and rule versions go with the segment; they are read-only in the
        admin, so Django's own collector would refuse the delete for lack of permission on them.
        """
        objs = list(objs)
        deleted = [
            f"{obj} ({obj.slug}) with its {obj.size} memberships, their history and rule versions" for obj in objs
        ]
        dependants = [name for obj in objs for name in segment_dependants(obj)]
        return deleted, {Segment._meta.verbose_name_plural: len(objs)}, set(), dependants

    def delete_model(self, request, obj) -> None:
        delete_segment(obj)

    @admin.action(description="Refresh now (in the background)")
    def refresh_now(self, request: HttpRequest, queryset: SegmentQuerySet) -> None:
        rule_segments = list(queryset.rule_based().values_list("pk", flat=True))
        for segment_id in rule_segments:
            enqueue_refresh_segment(segment_id)
        skipped = queryset.count() - len(rule_segments)
        message = f"Queued a refresh of {len(rule_segments)} segment(s) and the segments depending on them."
        if skipped:
            message += f" {skipped} static segment(s) skipped: their members change by hand only."
        self.message_user(request, message, messages.SUCCESS)

    @admin.action(description="Add or remove members (static segment)")
    def edit_static_members(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        segments = list(queryset[:2])
        if len(segments) != 1 or not segments[0].is_static:
            self.message_user(
                request, "Select exactly one static list or suppression list to edit its members.", messages.ERROR
            )
            return None
        return HttpResponseRedirect(reverse("admin:segments_segment_static_members", args=[segments[0].pk]))

    def get_urls(self):
        view = self.admin_site.admin_view(self.static_members_view)
        governance = self.admin_site.admin_view(governance_admin.governance_page)
        coverage = self.admin_site.admin_view(coverage_admin.coverage_page)
        boundaries = self.admin_site.admin_view(boundaries_admin.boundary_page)
        dimensions = self.admin_site.admin_view(boundaries_admin.dimension_page)
        return [
            path("<int:segment_id>/members/", view, name="segments_segment_static_members"),
            path("governance/", governance, name="segments_governance"),
            path("boundaries/", boundaries, name="segments_boundaries"),
            path("dimensions/", dimensions, name="segments_dimensions"),
            path("coverage/", coverage, name="segments_coverage"),
            path(
                "governance/reminders/read/",
                self.admin_site.admin_view(governance_admin.reminders_read),
                name="segments_governance_reminders_read",
            ),
            *super().get_urls(),
        ]

    def static_members_view(self, request: HttpRequest, segment_id: int) -> HttpResponse:
        segment = get_object_or_404(Segment.objects.static(), pk=segment_id)
        if not self.has_change_permission(request, segment):
            return HttpResponse(status=403)
        if request.method == "POST" and "retry" in request.POST:
            edit = ListEdit.objects.filter(segment=segment, pk=request.POST["retry"][:20]).first()
            _retry(self, request, [edit] if edit else [])
            return HttpResponseRedirect(request.path)
        form = StaticMembersForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            ids, operation = form.cleaned_data["contact_ids"], form.cleaned_data["operation"]
            if operation == "add":
                changed = add_static_members(segment, ids, user=signed_in_user(request))
                message = f"Added {changed} contact(s) to {segment}; {len(ids) - changed} already were members."
            else:
                changed = remove_static_members(segment, ids, user=signed_in_user(request))
                message = f"Removed {changed} contact(s) from {segment}; {len(ids) - changed} were not members."
            self.message_user(request, message, messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:segments_segment_change", args=[segment.pk]))
        ctx = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "segment": segment,
            "form": form,
            "edits": ListEdit.objects.filter(segment=segment).select_related("requested_by")[:10],
            "title": f"Add or remove members: {segment}",
        }
        return TemplateResponse(request, "admin/segments/static_members.html", ctx)


class StaticMembersForm(forms.Form):
    operation = forms.ChoiceField(choices=[("add", "Add these contacts"), ("remove", "Remove these contacts")])
    contacts = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80}),
        help_text="Contact emails or ids, separated by commas, spaces or new lines.",
    )
    file = forms.FileField(
        required=False,
        label="or a CSV file",
        help_text="One e-mail or contact id per row, in a column headed email or id (else the first column). "
        "An opt-out or legal-hold list exported from another tool will do.",
    )

    def clean(self) -> dict:
        super().clean()
        cleaned = self.cleaned_data
        if self.errors:
            return cleaned
        upload, typed = cleaned.get("file"), cleaned.get("contacts", "")
        if upload is not None and typed.strip():
            raise ValidationError("Type the contacts or upload a file, not both.")
        if upload is None and not typed.strip():
            raise ValidationError("Type at least one e-mail or contact id, or upload a CSV file of them.")
        if upload is not None:
            if upload.size > MAX_UPLOAD_BYTES:
                raise ValidationError(f"The file is {upload.size:,} bytes; at most {MAX_UPLOAD_BYTES:,}.")
            tokens = read_member_file(upload.read())
        else:
            tokens = split_tokens(typed)
        cleaned["contact_ids"] = resolve_contacts(tokens)
        return cleaned


MAX_UPLOAD_BYTES = 10_000_000


def _retry(model_admin: admin.ModelAdmin, request: HttpRequest, edits: list[ListEdit]) -> None:
    """Queue these failed list edits again, saying which were and why the others were not."""
    if not edits:
        model_admin.message_user(request, "No such change of this list.", messages.ERROR)
    for edit in edits:
        try:
            retry_list_edit(edit.pk)
        except ValueError as refused:
            model_admin.message_user(request, f"{edit}: {refused}", messages.WARNING)
        else:
            model_admin.message_user(
                request,
                f"Retrying: {edit.get_operation_display().lower()} {edit.segment} "
                f"({edit.total:,} contact{pluralize(edit.total)}).",
                messages.SUCCESS,
            )


@admin.register(ListEdit)
class ListEditAdmin(admin.ModelAdmin):
    """Large selections added to or removed from static lists in the background, with progress."""

    list_display = ["created_at", "segment", "operation", "status", "progress", "requested_by", "source"]
    list_select_related = ["segment", "requested_by"]
    list_filter = ["status", "operation"]
    readonly_fields = (
        "segment",
        "operation",
        "requested_by",
        "source",
        "status",
        "progress",
        "added",
        "removed",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    )
    fields = readonly_fields

    actions = ["retry"]

    @admin.display(description="progress")
    def progress(self, edit: ListEdit) -> str:
        return f"{edit.done:,} of {edit.total:,} ({edit.percent}%)"

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("segments.change_segment")

    @admin.action(description="Retry the selected failed changes", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        _retry(self, request, list(queryset.select_related("segment")))

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """History and membership are written by refreshes and actions only."""

    paginator = LargeTablePaginator
    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["contact", "segment", "joined_at"]
    list_select_related = ["contact", "segment"]
    list_filter = ["segment"]
    raw_id_fields = ["contact", "segment"]
    search_fields = ["=contact__email", "=contact__id"]


@admin.register(MembershipChange)
class MembershipChangeAdmin(ReadOnlyAdmin):
    list_display = ["changed_at", "contact", "kind", "segment", "reason", "why", "changed_by"]
    list_select_related = ["contact", "segment", "changed_by"]
    list_filter = ["kind", "reason", "segment"]
    raw_id_fields = ["contact", "segment", "changed_by"]
    search_fields = ["=contact__email", "=contact__id"]
    readonly_fields = ("segment", "contact", "kind", "reason", "changed_at", "changed_by", "why", "detail")
    fields = readonly_fields

    @admin.display(description="Why (the explainer at the time)")
    def why(self, change: MembershipChange) -> str:
        return detail_text(change.detail) or "—"


@admin.register(RuleVersion)
class RuleVersionAdmin(ReadOnlyAdmin):
    list_display = ["changed_at", "segment", "changed_by", "short_note", "sizes"]
    list_select_related = ["segment", "changed_by"]
    list_filter = ["segment"]
    raw_id_fields = ["segment", "changed_by"]
    search_fields = ["segment__name", "segment__slug", "note"]
    readonly_fields = (
        "segment", "changed_by", "changed_at", "note", "sizes", "rule_diff", "old_rule_json", "new_rule_json",
    )  # fmt: skip
    fields = readonly_fields

    class Media:
        css = {"all": ["crmseg/governance-admin.css"]}

    @admin.display(description="note")
    def short_note(self, version: RuleVersion) -> str:
        return Truncator(version.note).chars(80) or "—"

    @admin.display(description="members before → after")
    def sizes(self, version: RuleVersion) -> str:
        return VersionDiff(version, []).sizes

    @admin.display(description="rule before and after, in words")
    def rule_diff(self, version: RuleVersion) -> str:
        (diff,) = version_diffs([version], fields=get_fields())
        return render_to_string("segments/rule_diff.html", {"rows": diff.rows})

    @admin.display(description="old rule")
    def old_rule_json(self, version: RuleVersion) -> str:
        return format_html("<pre>{}</pre>", json.dumps(version.old_rule, indent=2))

    @admin.display(description="new rule")
    def new_rule_json(self, version: RuleVersion) -> str:
        return format_html("<pre>{}</pre>", json.dumps(version.new_rule, indent=2))
