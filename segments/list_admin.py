""" "Add to static list…" and "Remove from static list…" on the contact list: the contacts admin's
actions (on the selected contacts, or with "Select all" on the whole filtered result) and the form
the contact search page posts to.

`contacts` knows nothing of segments, so the contacts admin gains these actions here: segments
registers a subclass of contacts' ContactAdmin in its place. The work is segments.static's
`apply_selection`: one statement for up to INLINE_MAX contacts, a task with progress beyond.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.http import urlencode
from django.utils.text import slugify

from contacts import admin as contacts_admin
from contacts.models import Contact
from crmseg_site.access import signed_in_user
from segments.editing import save_segment
from segments.models import ListEditOperation, Segment, SegmentKind, SegmentStatus
from segments.static import apply_selection

# How far the confirmation page counts a selection before it says "more than".
COUNT_CAP = 100_000


class ListChoiceForm(forms.Form):
    """Which static list: an existing one, or a new one named here (add only)."""

    segment = forms.ModelChoiceField(
        label="List",
        required=False,
        queryset=Segment.objects.exclude(status=SegmentStatus.ARCHIVED),
        empty_label="Choose a static list…",
    )
    new_name = forms.CharField(label="or a new list named", required=False, max_length=200)
    new_kind = forms.ChoiceField(
        label="kind of the new list",
        required=False,
        choices=[
            (SegmentKind.STATIC, "Static list"),
            (SegmentKind.SUPPRESSION_LIST, "Suppression list (opt-out, legal hold)"),
        ],
        initial=SegmentKind.STATIC,
        widget=forms.RadioSelect,
    )

    def __init__(self, data=None, *, operation: str) -> None:
        super().__init__(data, prefix="list")
        self.operation = operation
        lists = Segment.objects.static().exclude(status=SegmentStatus.ARCHIVED).only("pk", "name", "kind", "size")
        field = self.fields["segment"]
        assert isinstance(field, forms.ModelChoiceField)  # declared above
        field.choices = [
            ("", "Choose a static list…"),
            *((s.pk, f"{s.name} ({s.get_kind_display().lower()}, {s.size:,} members)") for s in lists),
        ]
        if operation != ListEditOperation.ADD:
            del self.fields["new_name"], self.fields["new_kind"]

    def clean_segment(self) -> Segment | None:
        segment = self.cleaned_data["segment"]
        if segment is not None and not segment.is_static:
            raise ValidationError(
                f"{segment.name} is a {segment.get_kind_display().lower()} segment: its rule decides who is in it. "
                "Choose a static list or a suppression list."
            )
        return segment

    def clean(self) -> dict:
        super().clean()
        cleaned = self.cleaned_data
        new_name = cleaned.get("new_name", "").strip()
        if self.errors:
            return cleaned
        if cleaned.get("segment") is not None and new_name:
            raise ValidationError("Choose a list or name a new one, not both.")
        if cleaned.get("segment") is None and not new_name:
            or_new = " or name a new one" if "new_name" in self.fields else ""
            raise ValidationError(f"Choose a static list{or_new}.")
        if new_name and not slugify(new_name):
            self.add_error("new_name", "Give the list a name with letters or digits.")
        return cleaned

    def target(self, *, user) -> Segment:
        """The chosen list, or the new one made now (owned by the user)."""
        if self.cleaned_data.get("segment") is not None:
            return self.cleaned_data["segment"]
        name = self.cleaned_data["new_name"].strip()
        base = slugify(name)[:90]
        slug, n = base, 1
        while Segment.objects.filter(slug=slug).exists():
            n += 1
            slug = f"{base}-{n}"
        segment = Segment(
            name=name,
            slug=slug,
            kind=self.cleaned_data.get("new_kind") or SegmentKind.STATIC,
            category="suppression" if self.cleaned_data.get("new_kind") == SegmentKind.SUPPRESSION_LIST else "other",
            owner=user,
        )
        return save_segment(segment, user=user)


def count_text(contacts: QuerySet[Contact]) -> str:
    n = contacts.order_by().values("pk")[: COUNT_CAP + 1].count()
    return f"more than {COUNT_CAP:,}" if n > COUNT_CAP else f"{n:,}"


def apply_to_list(
    request: HttpRequest, contacts: QuerySet[Contact], *, operation: str, form: ListChoiceForm, source: str
) -> tuple[str, int]:
    """Apply a valid form's choice to the selection: (message, message level) for the user."""
    try:
        with transaction.atomic():  # a new list is kept only when the contacts went in
            user = signed_in_user(request)
            segment = form.target(user=user)
            applied = apply_selection(segment, contacts, operation=operation, user=user, source=source)
    except (ValueError, ValidationError) as error:
        text = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        return text, messages.ERROR
    return applied.message(segment, operation), messages.SUCCESS


class ContactAdmin(contacts_admin.ContactAdmin):
    actions = [*contacts_admin.ContactAdmin.actions, "add_to_static_list", "remove_from_static_list"]

    def has_list_edit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("segments.change_segment")

    @admin.action(description="Add to static list…", permissions=["list_edit"])
    def add_to_static_list(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        return self._list_action(request, queryset, operation=ListEditOperation.ADD)

    @admin.action(description="Remove from static list…", permissions=["list_edit"])
    def remove_from_static_list(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        return self._list_action(request, queryset, operation=ListEditOperation.REMOVE)

    def _list_action(self, request: HttpRequest, queryset: QuerySet, *, operation: str) -> TemplateResponse | None:
        """Ask which list (the selection carried through as the admin posted it), then apply."""
        across = request.POST.get("select_across") == "1"
        form = ListChoiceForm(request.POST if "apply" in request.POST else None, operation=operation)
        if form.is_bound and form.is_valid():
            filters = urlencode(sorted((name, str(value)) for name, value in request.GET.items()))
            source = f"Contacts admin: {'all matching ' + (filters or 'no filter') if across else 'selected contacts'}"
            text, level = apply_to_list(request, queryset, operation=operation, form=form, source=source)
            self.message_user(request, text, level)
            if level == messages.SUCCESS:
                return None
        ctx = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Add to a static list" if operation == ListEditOperation.ADD else "Remove from a static list",
            "form": form,
            "operation": operation,
            "action": "add_to_static_list" if operation == ListEditOperation.ADD else "remove_from_static_list",
            "across": across,
            "count": count_text(queryset),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "filters": request.GET.urlencode(),
        }
        return TemplateResponse(request, "admin/segments/contact_list_action.html", ctx)


admin.site.unregister(Contact)
admin.site.register(Contact, ContactAdmin)
