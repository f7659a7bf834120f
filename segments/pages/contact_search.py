"""Contact search for Sales reps: name, email or company, filtered by owner, segment, stage and engagement."""

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower

from contacts.models import Contact, EngagementLevel, LifecycleStage
from segments.models import Segment, SegmentStatus

OWNER_MINE = "mine"
OWNER_ANY = "any"
OWNER_NONE = "none"


def owner_choices() -> list[tuple[str, str]]:
    people = (
        get_user_model()
        .objects.filter(Q(is_staff=True) | Q(groups__name="Sales"), is_active=True)
        .distinct()
        .order_by("first_name", "last_name", "username")
    )
    named = [(str(user.pk), user.get_full_name() or user.get_username()) for user in people]
    return [(OWNER_MINE, "Mine"), (OWNER_ANY, "Anyone"), (OWNER_NONE, "Nobody"), *named]


class ContactSearchForm(forms.Form):
    q = forms.CharField(label="Name, email or company", required=False, max_length=200)
    owner = forms.ChoiceField(label="Owner", required=False)
    segment = forms.ModelChoiceField(
        label="Segment",
        required=False,
        empty_label="Any segment",
        queryset=Segment.objects.exclude(status=SegmentStatus.ARCHIVED).only("id", "name"),
    )
    stage = forms.ChoiceField(
        label="Lifecycle stage", required=False, choices=[("", "Any stage"), *LifecycleStage.choices]
    )
    level = forms.ChoiceField(label="Engagement", required=False, choices=[("", "Any level"), *EngagementLevel.choices])

    def __init__(self, data, *, user) -> None:
        data = data.copy()
        data.setdefault("owner", OWNER_MINE)
        super().__init__(data, label_suffix="")
        self.user = user
        self.fields["owner"].choices = owner_choices()

    def search(self) -> QuerySet[Contact]:
        """The matching contacts in name order; call after is_valid()."""
        data = self.cleaned_data
        contacts = Contact.objects.select_related("company", "owner", "metrics")
        for term in data["q"].split():
            contacts = contacts.filter(term_filter(term))
        owner = data["owner"]
        if owner == OWNER_MINE:
            contacts = contacts.filter(owner=self.user)
        elif owner == OWNER_NONE:
            contacts = contacts.filter(owner__isnull=True)
        elif owner != OWNER_ANY:
            contacts = contacts.filter(owner_id=int(owner))
        if data["segment"]:
            contacts = contacts.filter(memberships__segment=data["segment"])
        if data["stage"]:
            contacts = contacts.filter(lifecycle_stage=data["stage"])
        if data["level"]:
            contacts = contacts.filter(metrics__engagement_level=data["level"])
        return contacts.order_by(Lower("last_name"), Lower("first_name"), "id")


def term_filter(term: str) -> Q:
    """One search word matches the start of a name, email or company name, or any part of an email."""
    if "@" in term:
        return Q(email__icontains=term)
    return (
        Q(first_name__istartswith=term)
        | Q(last_name__istartswith=term)
        | Q(email__istartswith=term)
        | Q(company__name__istartswith=term)
        | Q(company__domain__istartswith=term)
    )
