"""Admin pages of duplicate companies: the review queue, the side-by-side merge page, merges with undo.

As for contacts (contacts/duplicate_admin.py): the queue is the CompanyDuplicateCandidate change list
(pending pairs, best first); "Find duplicate companies now" queues the search as a django-q2 task. A
pair's page shows both companies field by field with the value the merge keeps chosen
(contacts.company_merging's defaults); the operator picks the company that stays and any values, and
merges or dismisses. A page left open while a company changed, or a pair merged away meanwhile, is
refused with a message rather than merged on values nobody saw. The merge list has "Undo".
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import capfirst
from django_q.tasks import async_task

from contacts import company_merging
from contacts.merging import LOSER, SURVIVOR, MergeRefused
from contacts.models import Company, CompanyDuplicateCandidate, CompanyMerge, DuplicateStatus
from crmseg_site.access import signed_in_user
from crmseg_site.model_fields import concrete_field, verbose_name
from crmseg_site.untrusted_json import UntrustedJSONAdmin

A, B = "a", "b"


class CompanyMergeForm(forms.Form):
    """Which company stays, and per field whose value it keeps (a, b, or both for technologies)."""

    keep = forms.ChoiceField(
        choices=[(A, "first"), (B, "second")], widget=forms.RadioSelect, label="Company that stays"
    )
    # When the page was drawn: both companies' updated_at, so that a change since is not merged blind.
    seen = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, pair: CompanyDuplicateCandidate, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.first, self.second = pair.company_a, pair.company_b
        defaults = company_merging.default_choices(self.first, self.second)
        self.rows = []
        for name, side in defaults.items():
            allowed = [(A, "first"), (B, "second")]
            allowed += [("both", "both")] if name in company_merging.TAG_FIELDS else []
            initial = {SURVIVOR: A, LOSER: B}.get(side, side)
            self.fields[f"field:{name}"] = forms.ChoiceField(
                choices=allowed, initial=initial, widget=forms.RadioSelect, label=name
            )
            row = (capfirst(verbose_name(Company, name)), _shown(self.first, name), _shown(self.second, name))
            self.rows.append((name, *row, self[f"field:{name}"]))
        self.fields["keep"].initial = A
        self.fields["seen"].initial = _seen(self.first, self.second)

    def clean_seen(self) -> str:
        if self.cleaned_data["seen"] != _seen(self.first, self.second):
            raise forms.ValidationError(
                "One of these companies changed since this page was shown; review the values below again."
            )
        return self.cleaned_data["seen"]

    def merge_arguments(self) -> dict:
        """merge_companies' keyword arguments: survivor and loser ids, and choices by survivor/loser."""
        keep_first = self.cleaned_data["keep"] == A
        survivor, loser = (self.first, self.second) if keep_first else (self.second, self.first)
        mine = A if keep_first else B
        choices = {}
        for name, *_ in self.rows:
            side = self.cleaned_data[f"field:{name}"]
            choices[name] = side if side == "both" else (SURVIVOR if side == mine else LOSER)
        return {"survivor_id": survivor.pk, "loser_id": loser.pk, "choices": choices}


def _seen(first: Company, second: Company) -> str:
    return f"{first.updated_at.isoformat()}|{second.updated_at.isoformat()}"


def _shown(company: Company, name: str) -> object:
    value = getattr(company, concrete_field(Company, name).attname)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return ", ".join(value) if isinstance(value, list) else ("" if value is None else value)


@admin.register(CompanyDuplicateCandidate)
class CompanyDuplicateCandidateAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    list_display = ["pair", "score", "evidence_text", "status", "found_at", "review"]
    list_filter = ["status"]
    list_select_related = ["company_a", "company_b"]
    search_fields = ["=company_a__domain", "=company_b__domain", "company_a__name", "company_b__name"]
    readonly_fields = [f.name for f in CompanyDuplicateCandidate._meta.fields]
    actions = ["dismiss"]
    change_list_template = "admin/contacts/companyduplicatecandidate/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Companies")
    def pair(self, candidate: CompanyDuplicateCandidate) -> str:
        return f"{candidate.company_a} / {candidate.company_b}"

    @admin.display(description="Evidence")
    def evidence_text(self, candidate: CompanyDuplicateCandidate) -> str:
        return "; ".join(candidate.evidence)

    @admin.display(description="")
    def review(self, candidate: CompanyDuplicateCandidate) -> str:
        url = reverse("admin:contacts_companyduplicatecandidate_review", args=[candidate.pk])
        return format_html('<a href="{}">Review →</a>', url)

    @admin.action(description="Not duplicates: dismiss the selected pairs", permissions=["change"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet[CompanyDuplicateCandidate]) -> None:
        count = queryset.update(status=DuplicateStatus.DISMISSED, reviewed_by=request.user, reviewed_at=timezone.now())
        self.message_user(request, f"{count} pair{'s' * (count != 1)} dismissed; the search will not offer them again.")

    def get_urls(self):
        def view(function, name: str, route: str):
            return path(route, self.admin_site.admin_view(function), name=f"contacts_companyduplicatecandidate_{name}")

        return [
            view(self.review_view, "review", "<int:pair_id>/review/"),
            view(self.find_view, "find", "find/"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        return HttpResponseRedirect(reverse("admin:contacts_companyduplicatecandidate_review", args=[object_id]))

    def find_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or not self.has_change_permission(request):
            raise PermissionDenied
        transaction.on_commit(lambda: async_task("contacts.tasks.find_company_duplicates", group="duplicates"))
        self.message_user(request, "The search for duplicate companies is queued; reload this page in a minute.")
        return HttpResponseRedirect(reverse("admin:contacts_companyduplicatecandidate_changelist"))

    def review_view(self, request: HttpRequest, pair_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        queue = reverse("admin:contacts_companyduplicatecandidate_changelist")
        pair = CompanyDuplicateCandidate.objects.select_related("company_a", "company_b").filter(pk=pair_id).first()
        if pair is None:
            message = f"Pair {pair_id} is no longer in the queue: one of its companies was merged or deleted."
            self.message_user(request, message, messages.WARNING)
            return HttpResponseRedirect(queue)
        form = CompanyMergeForm(request.POST or None, pair=pair)
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            if "dismiss" in request.POST:
                self.dismiss(request, CompanyDuplicateCandidate.objects.filter(pk=pair.pk))
                return HttpResponseRedirect(queue)
            if form.is_valid():
                try:
                    merge = company_merging.merge_companies(**form.merge_arguments(), by=signed_in_user(request))
                except MergeRefused as refused:
                    form.add_error(None, str(refused))
                else:
                    url = reverse("admin:contacts_companymerge_change", args=[merge.pk])
                    self.message_user(
                        request,
                        format_html(
                            'Merged {} ({}) into company {}. <a href="{}">Undo is on the merge\'s page.</a>',
                            merge.loser_name,
                            merge.loser_domain,
                            merge.survivor_id,
                            url,
                        ),
                    )
                    return HttpResponseRedirect(reverse("admin:contacts_company_change", args=[merge.survivor_id]))
            elif "seen" in form.errors:
                self.message_user(request, " ".join(str(e) for e in form.errors["seen"]), messages.WARNING)
                form = CompanyMergeForm(None, pair=pair)  # drawn again with the current values
        ctx = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "pair": pair, "form": form,
            "title": f"Duplicates? {pair.company_a} and {pair.company_b}",
        }  # fmt: skip
        return TemplateResponse(request, "admin/contacts/companyduplicatecandidate/review.html", ctx)


@admin.register(CompanyMerge)
class CompanyMergeAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    list_display = ["__str__", "merged_by", "merged_at", "undone_at"]
    list_filter = ["merged_at", "undone_at"]
    list_select_related = ["merged_by"]
    search_fields = ["=loser_domain", "loser_name", "=survivor_id", "=loser_id"]
    exclude = ["snapshot"]
    readonly_fields = ["survivor_id", "loser_id", "loser_name", "loser_domain", "choices", "merged_by", "merged_at",
                       "undone_by", "undone_at", "aliases_recorded"]  # fmt: skip
    actions = ["undo"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Aliases it recorded")
    def aliases_recorded(self, merge: CompanyMerge) -> str:
        """The domain the merge gave up, which upserts now read as the company holding it (a later merge
        may have moved it on); none once the merge is undone."""
        aliases = [f"{alias.domain} (now company {alias.company_id})" for alias in merge.aliases.order_by("domain")]
        return "; ".join(aliases) or "none"

    @admin.action(description="Undo the selected merges (newest first)", permissions=["change"])
    def undo(self, request: HttpRequest, queryset: QuerySet[CompanyMerge]) -> None:
        for merge in queryset.order_by("-pk"):
            try:
                company_merging.undo_company_merge(merge.pk, by=signed_in_user(request))
            except MergeRefused as refused:
                self.message_user(request, str(refused), messages.ERROR)
            else:
                self.message_user(request, f"Company merge {merge.pk} undone: {merge.loser_name} is back.")

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        if request.method == "POST" and "undo" in request.POST:
            if not self.has_change_permission(request):
                raise PermissionDenied
            self.undo(request, CompanyMerge.objects.filter(pk=object_id))
            return HttpResponseRedirect(request.path)
        merge = CompanyMerge.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        extra = {**(extra_context or {}), "can_undo": merge is not None and not merge.is_undone}
        return super().change_view(request, object_id, form_url, extra)
