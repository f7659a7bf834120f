"""Campaign admin: variants inline, and a preview of what one chosen contact would get and why."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from django.contrib import admin
from django.db import models
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from activation.campaigns import explain_choice
from activation.models import Campaign, CampaignVariant
from contacts.models import Contact, normalize_email
from crmseg_site.untrusted_json import UntrustedJSONAdmin

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class _Variants(TypedDict):
        variants_count: int


class CampaignVariantInline(UntrustedJSONAdmin, admin.StackedInline):
    model = CampaignVariant
    extra = 0
    fields = ["priority", "segment", "subject", "preheader", "content_blocks", "cta_text", "cta_url"]
    ordering = ["priority"]
    formfield_overrides = {  # a bare host becomes https://
        **UntrustedJSONAdmin.formfield_overrides,
        models.URLField: {"assume_scheme": "https"},
    }


def find_contact(query: str) -> Contact | None:
    """A contact by id or by email, as typed into the preview form."""
    query = query.strip()
    if query.isdigit():
        return Contact.objects.filter(pk=int(query)).first()
    return Contact.objects.filter(email=normalize_email(query)).first()


@admin.register(Campaign)
class CampaignAdmin(UntrustedJSONAdmin, admin.ModelAdmin):
    list_display = ["name", "slug", "active", "subject", "variant_count", "preview_link"]
    list_filter = ["active"]
    search_fields = ["name", "slug", "subject"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["preview_link"]
    inlines = [CampaignVariantInline]
    formfield_overrides = {**UntrustedJSONAdmin.formfield_overrides, models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(variants_count=Count("variants"))

    @admin.display(description="variants", ordering="variants_count")
    def variant_count(self, obj: WithAnnotations[Campaign, _Variants]) -> int:
        return obj.variants_count

    @admin.display(description="preview")
    def preview_link(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "Save the campaign first."
        url = reverse("admin:activation_campaign_preview", args=[obj.pk])
        return format_html('<a href="{}">Preview for a contact</a>', url)

    def get_urls(self) -> list:
        preview = self.admin_site.admin_view(self.preview_view)
        return [path("<int:object_id>/preview/", preview, name="activation_campaign_preview"), *super().get_urls()]

    def preview_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        campaign = get_object_or_404(Campaign, pk=object_id)
        if not self.has_view_permission(request, campaign):
            return HttpResponse(status=403)
        query = request.GET.get("contact", "")
        ctx = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": campaign,
            "title": f"Preview {campaign}",
            "campaign": campaign,
            "query": query,
        }
        if query:
            contact = find_contact(query)
            if contact is None:
                ctx["error"] = f"No contact has the id or email {query!r}."
            else:
                ctx["contact"] = contact
                ctx["content"], ctx["checks"] = explain_choice(campaign, contact)
        return TemplateResponse(request, "admin/activation/campaign/preview.html", ctx)
