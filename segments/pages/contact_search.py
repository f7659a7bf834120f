"""Contact search for Sales reps: name, email or company, filtered by owner, segment, stage and engagement."""

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower

from contacts.models import Company, Contact, EngagementLevel, LifecycleStage
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
        owner = data["owner"]
        if owner == OWNER_MINE:
            contacts = contacts.filter(owner=self.user)
        elif owner == OWNER_NONE:
            contacts = contacts.filter(owner__isnull=True)
        elif owner != OWNER_ANY:
            contacts = contacts.filter(owner_id=int(owner))
        if data["q"].split():
            contacts = contacts.annotate(first_lower=Lower("first_name"), last_lower=Lower("last_name"))
            contacts = contacts.filter(text_filter(data["q"], scoped=owner != OWNER_ANY))
        if data["segment"]:
            contacts = contacts.filter(memberships__segment=data["segment"])
        if data["stage"]:
            contacts = contacts.filter(lifecycle_stage=data["stage"])
        if data["level"]:
            contacts = contacts.filter(metrics__engagement_level=data["level"])
        return contacts.order_by(Lower("last_name"), Lower("first_name"), "id")


def text_filter(query: str, *, scoped: bool) -> Q:
    """Every word matches the start of a first or last name, an email, or a company name or domain.

    Within one owner's contacts (`scoped`) the words are plain filters: the owner index narrows
    the rows first. Across everyone, the last word is looked up through indexes that serve a
    prefix match (lower(last_name), email, company name and domain) and the other words filter
    what it found; first names have no index, so they only count next to an indexed word
    ("ada lovelace", not "ada" alone).
    """
    *others, anchor = query.lower().split()
    match = Q() if scoped else Q(pk__in=indexed_matches(anchor))
    for term in others if not scoped else [*others, anchor]:
        match &= word_filter(term)
    return match


def word_filter(term: str) -> Q:
    if term.startswith("@"):
        return Q(company__domain__startswith=term[1:])
    return (
        Q(first_lower__startswith=term)
        | Q(last_lower__startswith=term)
        | Q(email__startswith=term)
        | Q(company__name__istartswith=term)
        | Q(company__domain__startswith=term)
    )


def indexed_matches(term: str) -> QuerySet:
    """Ids of contacts one word finds through an index, as a UNION the database runs as one query."""
    contacts = Contact.objects.order_by()
    if term.startswith("@"):
        return contacts.filter(company__domain__startswith=term[1:]).values("pk")
    if "@" in term:
        return contacts.filter(email__startswith=term).values("pk")
    companies = Company.objects.order_by().annotate(name_lower=Lower("name"))
    by_company = companies.filter(prefix("name_lower", term) | Q(domain__startswith=term)).values("pk")
    return (
        contacts.annotate(last_lower=Lower("last_name"))
        .filter(prefix("last_lower", term))
        .values("pk")
        .union(
            contacts.filter(email__startswith=term).values("pk"),
            contacts.filter(company__in=by_company).values("pk"),
        )
    )


def prefix(name: str, term: str) -> Q:
    """`name` starts with `term`, also written as a range so a plain b-tree index on it serves
    (LIKE 'x%' needs a pattern-ops index outside the C locale)."""
    after = term[:-1] + chr(ord(term[-1]) + 1)
    return Q(**{f"{name}__gte": term, f"{name}__lt": after, f"{name}__startswith": term})
