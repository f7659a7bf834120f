"""Admin pages of duplicates: the review queue, the side-by-side merge page, and merges with undo.

The queue is the DuplicateCandidate change list (pending pairs, best first); "Find duplicates"
queues the search as a django-q2 task. A pair's page shows both contacts field by field, each row
with the value the merge keeps chosen (contacts.merging's defaults); the operator picks the contact
that stays and any values, and merges or dismisses. The merge list has "Undo" on each merge.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import capfirst
from django_q.tasks import async_task

from contacts import merging
from contacts.models import Contact, ContactMerge, DuplicateCandidate, DuplicateStatus
from crmseg_site.access import signed_in_user
from crmseg_site.model_fields import concrete_field, verbose_name
from crmseg_site.untrusted_json import UntrustedJSONAdmin

A, B = "a", "b"


class MergeForm(forms.Form):
    """Which contact stays, and per field whose value it keeps (a, b, or both for tag lists)."""

    keep = forms.ChoiceField(
        choices=[(A, "first"), (B, "second")], widget=forms.RadioSelect, label="Contact that stays"
    )

    def __init__(self, *args, pair: DuplicateCandidate, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.first, self.second = pair.contact_a, pair.contact_b
        defaults = merging.default_choices(self.first, self.second)
        self.rows = []
        for name, side in defaults.items():
            allowed = [(A, "first"), (B, "second")] + ([("both", "both")] if name in merging.TAG_FIELDS else [])
            initial = {merging.SURVIVOR: A, merging.LOSER: B}.get(side, side)
            self.fields[f"field:{name}"] = forms.ChoiceField(
                choices=allowed, initial=initial, widget=forms.RadioSelect, label=name
            )
            row = (_label(name), _shown(self.first, name), _shown(self.second, name), self[f"field:{name}"])
            self.rows.append((name, *row))
        self.fields["keep"].initial = A

    def merge_arguments(self) -> dict:
        """merge_contacts' keyword arguments: survivor and loser ids, and choices by survivor/loser."""
        keep_first = self.cleaned_data["keep"] == A
        survivor, loser = (self.first, self.second) if keep_first else (self.second, self.first)
        mine = A if keep_first else B
        choices = {}
        for name, *_ in self.rows:
            side = self.cleaned_data[f"field:{name}"]
            choices[name] = side if side == "both" else (merging.SURVIVOR if side == mine else merging.LOSER)
        return {"survivor_id": survivor.pk, "loser_id": loser.pk, "choices": choices}


def _label(name: str) -> str:
    if name.startswith("props."):
        return name
    return capfirst(verbose_name(Contact, name))


def _shown(contact: Contact, name: str) -> object:
    if name.startswith("props."):
        return contact.properties.get(name.removeprefix("props."), "")
    field = concrete_field(Contact, name)
    if field.is_relation:
        return getattr(contact, name) or ""
    value = getattr(contact, field.attname)
    return ", ".join(value) if isinstance(value, list) else ("" if value is None else value)


@admin.register(DuplicateCandidate)
class DuplicateCandidateAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    list_display = ["pair", "score", "evidence_text", "status", "found_at", "review"]
    list_filter = ["status"]
    list_select_related = ["contact_a", "contact_b"]
    search_fields = ["=contact_a__email", "=contact_b__email"]
    readonly_fields = [f.name for f in DuplicateCandidate._meta.fields]
    actions = ["dismiss"]
    change_list_template = "admin/contacts/duplicatecandidate/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[DuplicateCandidate]:
        return super().get_queryset(request).select_related("contact_a", "contact_b")

    @admin.display(description="Contacts")
    def pair(self, candidate: DuplicateCandidate) -> str:
        return f"{candidate.contact_a} / {candidate.contact_b}"

    @admin.display(description="Evidence")
    def evidence_text(self, candidate: DuplicateCandidate) -> str:
        return "; ".join(candidate.evidence)

    @admin.display(description="")
    def review(self, candidate: DuplicateCandidate) -> str:
        url = reverse("admin:contacts_duplicatecandidate_review", args=[candidate.pk])
        return format_html('<a href="{}">Review →</a>', url)

    @admin.action(description="Not duplicates: dismiss the selected pairs", permissions=["change"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet[DuplicateCandidate]) -> None:
        count = queryset.update(status=DuplicateStatus.DISMISSED, reviewed_by=request.user, reviewed_at=timezone.now())
        self.message_user(request, f"{count} pair{'s' * (count != 1)} dismissed; the search will not offer them again.")

    def get_urls(self):
        def view(function, name: str, route: str):
            return path(route, self.admin_site.admin_view(function), name=f"contacts_duplicatecandidate_{name}")

        return [
            view(self.review_view, "review", "<int:pair_id>/review/"),
            view(self.find_view, "find", "find/"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        return HttpResponseRedirect(reverse("admin:contacts_duplicatecandidate_review", args=[object_id]))

    def find_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or not self.has_change_permission(request):
            raise PermissionDenied
        transaction.on_commit(lambda: async_task("contacts.tasks.find_duplicates", group="duplicates"))
        self.message_user(request, "The search for duplicates is queued; reload this page in a minute.")
        return HttpResponseRedirect(reverse("admin:contacts_duplicatecandidate_changelist"))

    def review_view(self, request: HttpRequest, pair_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        pair = get_object_or_404(DuplicateCandidate.objects.select_related("contact_a", "contact_b"), pk=pair_id)
        form = MergeForm(request.POST or None, pair=pair)
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            if "dismiss" in request.POST:
                self.dismiss(request, DuplicateCandidate.objects.filter(pk=pair.pk))
                return HttpResponseRedirect(reverse("admin:contacts_duplicatecandidate_changelist"))
            if form.is_valid():
                try:
                    merge = merging.merge_contacts(**form.merge_arguments(), by=signed_in_user(request))
                except merging.MergeRefused as refused:
                    form.add_error(None, str(refused))
                else:
                    url = reverse("admin:contacts_contactmerge_change", args=[merge.pk])
                    self.message_user(
                        request,
                        format_html(
                            'Merged {} into contact {}. <a href="{}">Undo is on the merge\'s page.</a>',
                            merge.loser_email,
                            merge.survivor_id,
                            url,
                        ),
                    )
                    return HttpResponseRedirect(reverse("admin:contacts_contact_change", args=[merge.survivor_id]))
        ctx = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "pair": pair, "form": form,
            "title": f"Duplicates? {pair.contact_a} and {pair.contact_b}",
        }  # fmt: skip
        return TemplateResponse(request, "admin/contacts/duplicatecandidate/review.html", ctx)


@admin.register(ContactMerge)
class ContactMergeAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    list_display = ["__str__", "merged_by", "merged_at", "undone_at"]
    list_filter = ["merged_at", "undone_at"]
    list_select_related = ["merged_by"]
    search_fields = ["=loser_email", "=survivor_id", "=loser_id"]
    exclude = ["snapshot"]
    readonly_fields = ["survivor_id", "loser_id", "loser_email", "choices", "participants", "merged_by", "merged_at",
                       "undone_by", "undone_at", "aliases_recorded"]  # fmt: skip
    actions = ["undo"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Aliases it recorded")
    def aliases_recorded(self, merge: ContactMerge) -> str:
        """The address the merge gave up, which upserts now read as the contact holding it (a later merge
        may have moved it on); none once the merge is undone."""
        aliases = [f"{alias.email} (now contact {alias.contact_id})" for alias in merge.aliases.order_by("email")]
        return "; ".join(aliases) or "none"

    @admin.action(description="Undo the selected merges (newest first)", permissions=["change"])
    def undo(self, request: HttpRequest, queryset: QuerySet[ContactMerge]) -> None:
        for merge in queryset.order_by("-pk"):
            try:
                merging.undo_merge(merge.pk, by=signed_in_user(request))
            except merging.MergeRefused as refused:
                self.message_user(request, str(refused), messages.ERROR)
            else:
                self.message_user(request, f"Merge {merge.pk} undone: {merge.loser_email} is back.")

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        if request.method == "POST" and "undo" in request.POST:
            if not self.has_change_permission(request):
                raise PermissionDenied
            self.undo(request, ContactMerge.objects.filter(pk=object_id))
            return HttpResponseRedirect(request.path)
        merge = get_object_or_404(ContactMerge, pk=object_id)
        extra = {**(extra_context or {}), "can_undo": not merge.is_undone}
        return super().change_view(request, object_id, form_url, extra)
