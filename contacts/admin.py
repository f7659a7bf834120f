"""Admin for the CRM data, built to stay quick on tables of a million contacts.

Change lists select their foreign keys in the same query, never count the unfiltered table twice
(`show_full_result_count = False`, and `LargeTablePaginator` reads PostgreSQL's estimate instead
of COUNT(*) on a big unfiltered table), and search with exact or prefix matches that indexes serve.
Foreign keys are picked by autocomplete or raw id, never from a <select> of every row.

Saves and deletes of contacts, companies, activities and deals made here go through
`contacts.writes`, which announces the contacts they change (segments refresh them after commit).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.forms import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django_q.tasks import async_task

from contacts import company_duplicate_admin, duplicate_admin, hygiene, import_admin, writes  # noqa: F401 - they register the duplicate and import pages
from contacts.erasure import erase_contacts
from contacts.models import (
    Activity,
    Company,
    Contact,
    ContactMetrics,
    Criterion,
    Deal,
    HygieneRun,
    JobTitleRule,
    LifecycleChange,
    MetricsRun,
    PropertyDefinition,
    Reachability,
    ScoringModel,
    ScoringModelVersion,
)
from contacts.normalize import Normalized, merged_originals, normalize_company, normalize_contact
from contacts.paging import LargeTablePaginator
from crmseg_site.untrusted_json import UntrustedJSONAdmin

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class _ContactCount(TypedDict):
        contact_count: int | None

    class _LastVersion(TypedDict):
        last_version: int | None


RECENT_ACTIVITIES = 20


class EmployeeBandFilter(admin.SimpleListFilter):
    """Company size in the bands sales teams talk about (1–10, 11–50, ... 5,001+)."""

    title = "company size"
    parameter_name = "employees"
    field_path = "employee_count"
    BANDS = {
        "1-10": (1, 10),
        "11-50": (11, 50),
        "51-200": (51, 200),
        "201-1000": (201, 1000),
        "1001-5000": (1001, 5000),
        "5001+": (5001, None),
    }

    def lookups(self, request, model_admin):
        return [(band, f"{band} employees") for band in self.BANDS]

    def queryset(self, request, queryset):
        band = self.BANDS.get(self.value() or "")
        if band is None:
            return queryset
        low, high = band
        queryset = queryset.filter(**{f"{self.field_path}__gte": low})
        return queryset if high is None else queryset.filter(**{f"{self.field_path}__lte": high})


class ContactEmployeeBandFilter(EmployeeBandFilter):
    field_path = "company__employee_count"


class ContactDataAdmin(admin.ModelAdmin):
    """Saves and deletes through contacts.writes, which announces the contacts they change."""

    paginator = LargeTablePaginator
    show_full_result_count = False
    list_per_page = 50

    def save_model(self, request, obj, form, change) -> None:
        for suggestion in getattr(form, "suggestions", {}).values():
            self.message_user(request, suggestion, level=messages.WARNING)
        writes.save(obj)

    def delete_model(self, request, obj) -> None:
        writes.delete(obj)

    def delete_queryset(self, request, queryset) -> None:
        writes.delete(queryset)


class NormalizingForm(forms.ModelForm):
    """Normalises what was typed (contacts.normalize) before the model's checks, keeping the
    originals on the record; suggestions (a mistyped mail domain) are shown after saving."""

    suggestions: dict[str, str]

    def normalize(self, typed: dict) -> Normalized:
        raise NotImplementedError

    def clean(self) -> dict:
        super().clean()
        cleaned = self.cleaned_data
        typed = {name: cleaned[name] for name in self.changed_data if isinstance(cleaned.get(name), str)}
        result = self.normalize(typed)
        for name, errors in result.errors.items():
            self.add_error(name, errors)
        cleaned.update({name: value for name, value in result.values.items() if name not in result.errors})
        self.instance.original_values = merged_originals(self.instance.original_values, typed, result.originals)
        self.suggestions = result.suggestions
        return cleaned


class CompanyForm(NormalizingForm):
    # Longer than the stored forms: a website URL or a country name is accepted and normalised.
    domain = forms.CharField(max_length=500, help_text="Domain or website, e.g. acme.com or https://www.acme.com/")
    country = forms.CharField(max_length=100, required=False, help_text="ISO code or name, e.g. DE or Germany")

    def normalize(self, typed: dict) -> Normalized:
        return normalize_company(typed)


class ContactForm(NormalizingForm):
    phone = forms.CharField(max_length=50, required=False, help_text="Any format; stored as E.164 (+14155550123)")
    country = forms.CharField(max_length=100, required=False, help_text="ISO code or name, e.g. DE or Germany")

    def normalize(self, typed: dict) -> Normalized:
        if "job_title" in typed:
            # A changed title re-derives function and seniority unless they were set by hand here.
            for name in ("job_function", "seniority"):
                typed[name] = "" if name not in self.changed_data else self.cleaned_data.get(name, "")
        stored_country = "" if self.instance.pk is None else self.instance.country
        result = normalize_contact(typed, titles=JobTitleRule.objects.title_map(), stored_country=stored_country)
        for name in ("job_function", "seniority"):
            if name not in self.changed_data and not result.values.get(name, True):
                del result.values[name]  # nothing derived: the stored value stays
        return result


def also_known_as(aliases: Iterable[tuple[str, int]], *, merge_page: str) -> str:
    """The (address or domain, merge id) a record answers to since merges, each with a link to its
    merge (the merge's undo takes it away)."""
    rows = [(key, reverse(merge_page, args=[merge_id]), merge_id) for key, merge_id in aliases]
    if not rows:
        return "—"
    return format_html_join(", ", '{} (<a href="{}">merge {}</a>)', rows)


class CompanyAdmin(UntrustedJSONAdmin, ContactDataAdmin):
    form = CompanyForm
    list_display = ["name", "domain", "industry", "employee_count", "country", "contact_count", "is_target_account"]
    list_filter = [EmployeeBandFilter, "industry", "is_target_account", "is_competitor"]
    search_fields = ["^name", "=domain"]
    search_help_text = "Name starts with, or exact domain"
    readonly_fields = ["known_as", "created_at", "updated_at", "original_values", "enriched_at"]
    ordering = ["name"]

    @admin.display(description="also known as (domains of companies merged into this one)")
    def known_as(self, company: Company) -> str:
        rows = company.aliases.order_by("domain").values_list("domain", "merge_id") if company.pk else []
        return also_known_as(rows, merge_page="admin:contacts_companymerge_change")

    def get_queryset(self, request):
        # A correlated subquery is evaluated for the page's rows only, unlike a GROUP BY count.
        contacts = Contact.objects.filter(company=OuterRef("pk")).order_by().values("company")
        return (
            super().get_queryset(request).annotate(contact_count=Subquery(contacts.annotate(n=Count("pk")).values("n")))
        )

    @admin.display(description="contacts")
    def contact_count(self, company: WithAnnotations[Company, _ContactCount]) -> int:
        return company.contact_count or 0


class LifecycleChangeInline(admin.TabularInline):
    model = LifecycleChange
    readonly_fields = ("changed_at", "from_stage", "to_stage")
    fields = readonly_fields
    ordering = ["-changed_at", "-id"]
    extra = 0
    can_delete = False
    verbose_name = "stage change"
    verbose_name_plural = "lifecycle history (newest first)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class RecentActivityFormSet(BaseInlineFormSet):
    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_queryset"):
            self._queryset = super().get_queryset()[:RECENT_ACTIVITIES]
        return self._queryset


class RecentActivityInline(admin.TabularInline):
    model = Activity
    formset = RecentActivityFormSet
    readonly_fields = ("occurred_at", "kind", "topic", "product", "campaign", "value", "url")
    fields = readonly_fields
    ordering = ["-occurred_at", "-id"]
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = f"latest {RECENT_ACTIVITIES} activities (see “all activities” above for the rest)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ContactAdmin(UntrustedJSONAdmin, ContactDataAdmin):
    form = ContactForm
    list_display = [
        "email",
        "full_name",
        "company",
        "owner",
        "lifecycle_stage",
        "lead_score",
        "email_status",
        "country",
        "lifecycle_changed_at",
    ]
    list_select_related = ["company", "owner"]
    list_filter = [
        "lifecycle_stage",
        "email_status",
        "reachability",
        "do_not_contact",
        "seniority",
        "job_function",
        ContactEmployeeBandFilter,
        "owner",
    ]
    search_fields = ["=email", "^last_name", "^first_name", "=company__domain"]
    search_help_text = "Exact email, first or last name starts with, or exact company domain"
    actions = ["erase_selected", "check_hygiene", "correct_domain_typos"]
    autocomplete_fields = ["company", "owner"]
    readonly_fields = [
        "lifecycle_changed_at", "all_activities", "created_at", "updated_at", "original_values", "enriched_at",
        "reachability", "known_as",
    ]  # fmt: skip
    inlines = [LifecycleChangeInline, RecentActivityInline]
    fieldsets = [
        (None, {"fields": ["email", "known_as", ("first_name", "last_name"), "phone", "company", "owner"]}),
        ("Role", {"fields": ["job_title", ("job_function", "seniority")]}),
        (
            "Lifecycle and value",
            {
                "fields": [
                    ("lifecycle_stage", "lifecycle_changed_at"),
                    "lead_score",
                    ("estimated_deal_size", "lifetime_value"),
                    ("customer_since", "renewal_date"),
                    "product_adoption",
                    "all_activities",
                ]
            },
        ),
        ("Reachability", {"fields": ["email_status", "do_not_contact", "reachability"]}),
        (
            "Location",
            {"fields": ["country", "region", "city", "postal_code", "street_address", "time_zone", "language"]},
        ),
        (
            "Demographics",
            {
                "classes": ["collapse"],
                "fields": ["birth_year", "gender", "income_band", "education", "marital_status"],
            },
        ),
        ("Interests and tools", {"fields": ["interests", "values", "technologies"]}),
        ("Custom properties", {"fields": ["properties"]}),
        ("Record", {"fields": ["created_at", "updated_at", "original_values", "enriched_at"]}),
    ]

    @admin.display(description="also known as (e-mail addresses of contacts merged into this one)")
    def known_as(self, contact: Contact) -> str:
        rows = contact.aliases.order_by("email").values_list("email", "merge_id") if contact.pk else []
        return also_known_as(rows, merge_page="admin:contacts_contactmerge_change")

    @admin.display(description="name")
    def full_name(self, contact: Contact) -> str:
        return contact.full_name

    @admin.display(description="all activities")
    def all_activities(self, contact: Contact) -> str:
        if contact.pk is None:
            return "—"
        url = reverse("admin:contacts_activity_changelist") + "?" + urlencode({"contact__id__exact": contact.pk})
        return format_html('<a href="{}">{} activities →</a>', url, contact.activities.count())

    @admin.action(
        description="Erase selected contacts (personal data, and from every destination)", permissions=["delete"]
    )
    def erase_selected(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        """Ask first (it cannot be undone), then contacts.erasure.erase_contacts."""
        if request.POST.get("confirm") != "yes":
            context = {**self.admin_site.each_context(request), "opts": self.model._meta, "contacts": queryset}
            return TemplateResponse(request, "admin/contacts/contact/erase_confirmation.html", context)
        erasure = erase_contacts(queryset.values_list("pk", flat=True), by=request.user)
        runs = len(erasure.queued_runs)
        self.message_user(
            request,
            f"Erased {len(erasure.erased)} contact(s); {runs} export run(s) queued to remove them from destinations; "
            f"{erasure.webhook_notices} webhook notice(s) queued.",
        )
        return None

    @admin.action(description="Check list hygiene of the selected contacts", permissions=["change"])
    def check_hygiene(self, request: HttpRequest, queryset: QuerySet) -> None:
        checked = hygiene.check_hygiene(contact_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"List hygiene: {checked}.")

    @admin.action(description="Correct mistyped e-mail domains (gmial.com → gmail.com)", permissions=["change"])
    def correct_domain_typos(self, request: HttpRequest, queryset: QuerySet) -> None:
        corrected, left = hygiene.correct_domain_typos(list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{corrected} address(es) corrected; what was typed is kept in original values.")
        if left:
            self.message_user(
                request,
                f"Not corrected, the corrected address belongs to another contact (review them as duplicates): "
                f"{', '.join(left[:20])}{' …' if len(left) > 20 else ''}",
                messages.WARNING,
            )


@admin.register(HygieneRun)
class HygieneRunAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    """The hygiene report: each check's counts by reachability, newest first (the trend)."""

    list_display = ["started_at", "full", "contacts", "changed", "summary", "duration_ms"]
    readonly_fields = [f.name for f in HygieneRun._meta.fields]
    change_list_template = "admin/contacts/hygienerun/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Contacts by reachability after the check")
    def summary(self, run: HygieneRun) -> str:
        labels = dict(Reachability.choices)
        return "; ".join(f"{labels.get(k, k)}: {n:,}" for k, n in sorted(run.counts.items(), key=lambda kv: -kv[1]))

    def get_urls(self):
        check = self.admin_site.admin_view(self.check_all_view)
        return [path("check/", check, name="contacts_hygienerun_check"), *super().get_urls()]

    def check_all_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or not self.has_view_permission(request):
            raise PermissionDenied
        transaction.on_commit(lambda: async_task("contacts.tasks.check_hygiene", group="hygiene"))
        self.message_user(request, "The list hygiene check of every contact is queued; reload in a minute.")
        return HttpResponseRedirect(reverse("admin:contacts_hygienerun_changelist"))


class ActivityAdmin(ContactDataAdmin):
    list_display = ["occurred_at", "kind", "contact", "topic", "product", "campaign", "value"]
    list_select_related = ["contact"]
    list_filter = ["kind", ("occurred_at", admin.DateFieldListFilter)]
    search_fields = ["=contact__email", "=topic", "=product", "=campaign", "=external_id"]
    search_help_text = "Exact contact email, topic, product, campaign or external id"
    raw_id_fields = ["contact"]
    readonly_fields = ["created_at"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    ordering = ["-occurred_at", "-id"]


class DealAdmin(ContactDataAdmin):
    list_display = ["name", "contact", "company", "amount", "stage", "created_at", "closed_at"]
    list_select_related = ["contact", "company"]
    list_filter = ["stage", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["^name", "=contact__email", "=company__domain"]
    search_help_text = "Name starts with, exact contact email or exact company domain"
    autocomplete_fields = ["contact", "company"]
    ordering = ["-created_at"]


class LifecycleChangeAdmin(admin.ModelAdmin):
    """Stage history is written by Contact.save; here it is read, never edited."""

    list_display = ["changed_at", "contact", "from_stage", "to_stage"]
    list_select_related = ["contact"]
    list_filter = ["to_stage", "from_stage", ("changed_at", admin.DateFieldListFilter)]
    search_fields = ["=contact__email"]
    search_help_text = "Exact contact email"
    raw_id_fields = ["contact"]
    paginator = LargeTablePaginator
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class JobTitleRuleAdmin(admin.ModelAdmin):
    """The job title -> function / seniority mapping that normalisation applies to new titles."""

    list_display = ["keyword", "job_function", "seniority"]
    list_editable = ["job_function", "seniority"]
    list_filter = ["job_function", "seniority"]
    search_fields = ["keyword"]


class PropertyDefinitionAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    list_display = ["key", "label", "type", "layer", "source"]
    list_filter = ["type", "layer", "source"]
    search_fields = ["key", "label"]


admin.site.register(Company, CompanyAdmin)
admin.site.register(Contact, ContactAdmin)
admin.site.register(Activity, ActivityAdmin)
admin.site.register(Deal, DealAdmin)
admin.site.register(LifecycleChange, LifecycleChangeAdmin)
admin.site.register(PropertyDefinition, PropertyDefinitionAdmin)
admin.site.register(JobTitleRule, JobTitleRuleAdmin)


# --- Scoring model (editable by operations, versioned) and derived metrics (read-only) ----------


class ScoringModelVersionInline(admin.TabularInline):
    model = ScoringModelVersion
    readonly_fields = ("number", "created_by", "created_at", "snapshot")
    fields = readonly_fields
    extra = 0
    can_delete = False
    ordering = ["-number"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ScoringModel)
class ScoringModelAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    """Every save records a version (who, when, all settings); activation is an action so the
    one-active constraint is never met by a stray checkbox."""

    list_display = ["name", "is_active", "half_life_days", "version", "updated_at"]
    readonly_fields = ["is_active", "created_at", "updated_at"]
    inlines = [ScoringModelVersionInline]
    actions = ["activate"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "created_at", "updated_at"]}),
        ("Engagement score", {"fields": ["weights", "half_life_days"]}),
        ("Engagement levels", {"fields": ["highly_engaged_top_percent", "disengaged_bottom_percent"]}),
        (
            "Email and web levels",
            {
                "fields": [
                    "email_window_days",
                    "email_highly_threshold",
                    "email_moderately_threshold",
                    "web_window_days",
                    "web_active_threshold",
                    "web_engaged_threshold",
                ]
            },
        ),
        ("Recency, frequency, value", {"fields": ["rfv_kinds", "rfv_frequency_window_days"]}),
        ("Velocity and intent", {"fields": ["velocity_min_ratio", "velocity_min_recent", "strong_intent_days"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(last_version=models.Max("versions__number"))

    @admin.display(description="version", ordering="last_version")
    def version(self, scoring_model: WithAnnotations[ScoringModel, _LastVersion]) -> int | None:
        return scoring_model.last_version

    def save_model(self, request, obj, form, change) -> None:
        obj.save_version(user=request.user)

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not (obj and obj.is_active)

    @admin.action(description="Make the selected scoring model the active one")
    def activate(self, request, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one scoring model to activate.", level="error")
            return
        scoring_model = queryset.get()
        scoring_model.activate(user=request.user)
        self.message_user(
            request, f"{scoring_model.name} is now the active scoring model; metrics use it from the next run."
        )


@admin.register(ContactMetrics)
class ContactMetricsAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    """Derived by compute_metrics: viewable, never edited by hand."""

    paginator = LargeTablePaginator
    show_full_result_count = False
    list_per_page = 50
    list_display = [
        "contact",
        "engagement_score",
        "engagement_percentile",
        "engagement_level",
        "top_topic",
        "top_product",
        "rfv_cell",
        "is_accelerating",
        "as_of",
    ]
    list_filter = [
        "engagement_level",
        "email_engagement_level",
        "web_activity_level",
        "rfv_cell",
        "is_accelerating",
        "recently_disengaged",
        "strong_intent",
    ]
    list_select_related = ["contact"]
    search_fields = ["^contact__email", "=top_topic"]
    search_help_text = "Contact email starts with, or exact top topic"
    raw_id_fields = ["contact"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MetricsRun)
class MetricsRunAdmin(admin.ModelAdmin):
    list_display = [
        "as_of",
        "full",
        "contacts",
        "activities_counted",
        "future_activities_ignored",
        "duration_ms",
        "scoring_version",
    ]
    list_filter = ["full"]
    list_select_related = ["scoring_version__scoring_model"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Criterion)
class CriterionAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    """The criteria plan the coverage report (admin: Segments › Criteria coverage) measures."""

    list_display = ["name", "layer", "fields", "suggested_property", "position"]
    list_editable = ["position"]
    list_filter = ["layer"]
