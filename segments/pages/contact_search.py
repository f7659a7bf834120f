"""Contact search for Sales reps: name, email or company, filtered by owner, segment, stage and engagement.

Everyone's contacts are listed in name order. A one-word search across a million of them must not
sort every match ("smi" finds tens of thousands), so each way a word can match is read in name
order up to the end of the requested page, and only those few rows are sorted together
(NameOrderSearch): a last-name prefix walks the name-order index from the prefix on; first-name,
email and company matches are looked for among the first names of that order, and sorted on their
own when they are not found there, which costs what they match, no more.
"""

from dataclasses import dataclass
from functools import cached_property

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Concat, Lower

from contacts.models import Company, Contact, EngagementLevel, LifecycleStage
from segments.models import Segment, SegmentStatus

OWNER_MINE = "mine"
OWNER_ANY = "any"
OWNER_NONE = "none"
NAME_ORDER = (Lower("last_name"), Lower("first_name"), "id")
WALK = 5_000  # names of the name order a way may walk to find its first rows before it sorts instead
# The same order written so that no index serves it: PostgreSQL then sorts a branch's matches
# instead of walking the name-order index until enough of them turn up, which takes most of the
# index when they sit at its far end (email "c9…" of contacts named "Bench-9…").
SORTED_NAME_ORDER = (Lower(Concat("last_name", Value(""))), Lower(Concat("first_name", Value(""))), "id")


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
        owner = self.fields["owner"]
        assert isinstance(owner, forms.ChoiceField)  # declared above
        owner.choices = owner_choices()  # read once (a callable would be read at each use)

    def search(self) -> "QuerySet[Contact] | NameOrderSearch":
        """The matching contacts in name order, to slice for a page; call after is_valid()."""
        data = self.cleaned_data
        contacts = Contact.objects.select_related("company", "owner", "metrics")
        owner = data["owner"]
        if owner == OWNER_MINE:
            contacts = contacts.filter(owner=self.user)
        elif owner == OWNER_NONE:
            contacts = contacts.filter(owner__isnull=True)
        elif owner != OWNER_ANY:
            contacts = contacts.filter(owner_id=int(owner))
        words = data["q"].lower().split()
        if words:
            contacts = contacts.annotate(first_lower=Lower("first_name"), last_lower=Lower("last_name"))
        # Within one owner's contacts every word is a plain filter on the owner's rows. Across
        # everyone the last word is found through the indexes (NameOrderSearch) and the other
        # words filter what it found.
        for word in words[:-1] if owner == OWNER_ANY else words:
            contacts = contacts.filter(word_filter(word))
        if data["segment"]:
            contacts = contacts.filter(memberships__segment=data["segment"])
        if data["stage"]:
            contacts = contacts.filter(lifecycle_stage=data["stage"])
        if data["level"]:
            contacts = contacts.filter(metrics__engagement_level=data["level"])
        if words:
            return NameOrderSearch(contacts, term=words[-1] if owner == OWNER_ANY else None)
        return contacts.order_by(*NAME_ORDER)

    def matching(self) -> QuerySet[Contact]:
        """Every matching contact, unordered: the whole result as one queryset (each word a filter),
        for set-based work such as adding the result to a static list; call after is_valid()."""
        search = self.search()
        if isinstance(search, NameOrderSearch):
            contacts = search.contacts
            return contacts.filter(word_filter(search.term)) if search.term is not None else contacts
        return search.order_by()


def word_filter(term: str) -> Q:
    """The word starts a first or last name, an email, or a company name or domain ("@acme": a domain)."""
    if term.startswith("@"):
        return Q(company__domain__startswith=term[1:])
    return (
        Q(first_lower__startswith=term)
        | Q(last_lower__startswith=term)
        | Q(email__startswith=term)
        | Q(company__name__istartswith=term)
        | Q(company__domain__startswith=term)
    )


@dataclass(frozen=True)
class NameOrderSearch:
    """Contacts among `contacts` that one word finds through an index, sliced in name order.

    Each way the word can match (a last-name or first-name prefix, an email prefix, a company
    whose name or domain starts with it) gives its first rows in name order, as many as the slice
    needs; the page is then cut from those few ids, sorted once more together. Slicing row 975 to
    1,000 reads at most 1,001 ids per way, whatever the number of matches. Without a `term` (one
    owner's contacts, the words already filters) `contacts` is the one way.
    """

    contacts: QuerySet[Contact]
    term: str | None

    def ways(self) -> tuple[QuerySet[Contact] | None, list[QuerySet[Contact]]]:
        """The last-name way, which the name-order index walks in order (None when the word
        cannot be a last name), and the other ways."""
        contacts, term = self.contacts.order_by(), self.term
        if term is None:
            return None, [contacts]
        if term.startswith("@"):
            return None, [contacts.filter(company__domain__startswith=term[1:])]
        by_email = contacts.filter(email__startswith=term)
        if "@" in term:
            return None, [by_email]
        companies = Company.objects.order_by().annotate(name_lower=Lower("name"))
        by_company = companies.filter(prefix("name_lower", term) | Q(domain__startswith=term)).values("pk")
        by_last_name = contacts.annotate(last_name_lower=Lower("last_name")).filter(prefix("last_name_lower", term))
        by_first_name = contacts.annotate(first_name_lower=Lower("first_name")).filter(prefix("first_name_lower", term))
        return by_last_name, [by_first_name, by_email, contacts.filter(company__in=by_company)]

    def __getitem__(self, window: slice) -> list[Contact]:
        start, stop = window.start or 0, window.stop
        in_order, ways = self.ways()
        ids: set[int] = set()
        if in_order is not None:
            ids.update(in_order.order_by(*NAME_ORDER).values_list("pk", flat=True)[:stop])
        for way in ways:
            ids.update(self.first_ids(way, stop))
        return list(self.contacts.filter(pk__in=ids).order_by(*NAME_ORDER)[start:stop])

    def count_up_to(self, cap: int) -> int:
        """How many contacts the word finds, counting no further than cap + 1: each way gives at
        most cap + 1 ids (unordered), and they are counted together."""
        in_order, ways = self.ways()
        ids: set[int] = set()
        for way in [in_order, *ways] if in_order is not None else ways:
            ids.update(way.values_list("pk", flat=True)[: cap + 1])
            if len(ids) > cap:
                break
        return min(len(ids), cap + 1)

    def first_ids(self, way: QuerySet[Contact], stop: int) -> list[int]:
        """A way's first `stop` ids in name order. Where its matches are common early in the
        name order (a one-letter email prefix), walking the first WALK names finds them at once;
        else (few matches, or all of them far down the order: emails "c9…" of contacts named
        "Bench-9…") the way's matches are sorted, which costs what they number."""
        if self.horizon is not None:
            # last_lower: the ways' annotation (Lower("last_name")), which the stubs' plugin does not see.
            near = way.filter(last_lower__lte=self.horizon).order_by(*NAME_ORDER).values_list("pk", flat=True)  # type: ignore[misc]
            found = list(near[:stop])
            if len(found) == stop:
                return found
        return list(way.order_by(*SORTED_NAME_ORDER).values_list("pk", flat=True)[:stop])

    @cached_property
    def horizon(self) -> str | None:
        """lower(last_name) WALK names into the name order (None when there are fewer contacts)."""
        names = Contact.objects.order_by(*NAME_ORDER).values_list(Lower("last_name"), flat=True)
        return next(iter(names[WALK : WALK + 1]), None)


def prefix(name: str, term: str) -> Q:
    """`name` starts with `term`, also written as a range so a plain b-tree index on it serves
    (LIKE 'x%' needs a pattern-ops index outside the C locale)."""
    after = term[:-1] + chr(ord(term[-1]) + 1)
    return Q(**{f"{name}__gte": term, f"{name}__lt": after, f"{name}__startswith": term})
