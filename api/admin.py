from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from api.keys import create_api_key
from api.models import ApiKey, Scope


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "expires_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "key_prefix", "scope_list", "expires_at", "last_used_at", "revoked_at", "created_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["key_prefix", "last_used_at", "revoked_at", "created_at", "created_by"]
    actions = ["revoke_keys"]

    @admin.display(description="key", ordering="prefix")
    def key_prefix(self, obj: ApiKey) -> str:
        return f"crmseg_{obj.prefix}_…" if obj.prefix else "—"

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        # A key's rights are fixed at creation: to change them, create a new key and revoke the old one.
        if obj is not None:
            return [*self.readonly_fields, "name", "scopes", "expires_at"]
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            return
        created, plain = create_api_key(
            name=obj.name, scopes=list(form.cleaned_data["scopes"]), expires_at=obj.expires_at, created_by=request.user
        )
        obj.pk = created.pk
        obj.prefix = created.prefix
        self.message_user(
            request,
            f"API key for {created.name}: {plain} — copy it now, it is stored hashed and cannot be shown again.",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)
