"""Merging duplicate companies and undoing the merge (contacts/company_merging.py), in code and through the API."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.catch_up import catch_up
from contacts.company_duplicates import find_company_duplicates
from contacts.company_merging import merge_companies, undo_company_merge
from contacts.merging import MergeRefused
from contacts.models import (
    Company,
    CompanyDuplicateCandidate,
    CompanyMatchKey,
    CompanyMerge,
    Contact,
    Deal,
    PendingChange,
)
from segments.refresh import refresh_segment
from tests.factories import CompanyFactory, ContactFactory, DealFactory, SegmentFactory, UserFactory
from tests.segments_support import member_ids


@pytest.fixture
def pair(db):
    survivor = CompanyFactory(
        name="Acme Ltd", domain="acme.co.uk", industry="", employee_count=None, technologies=["aws"], country="GB"
    )
    loser = CompanyFactory(
        name="Acme Shop", domain="shop.acme.co.uk", industry="retail", employee_count=250,
        technologies=["gcp", "aws"], is_target_account=True, country="",
    )  # fmt: skip
    ContactFactory.create_batch(2, company=survivor)
    ContactFactory.create_batch(3, company=loser)
    DealFactory(company=loser, contact=ContactFactory(), name="Shop renewal")
    find_company_duplicates()
    return survivor, loser


def _state() -> dict:
    """Everything a company merge touches and its undo must put back, as comparable rows."""
    contacts = Contact.objects.order_by("pk").values_list("pk", "company_id", "email")
    return {
        "companies": list(Company.objects.order_by("pk").values()),
        "contacts": list(contacts),
        "deals": list(Deal.objects.order_by("pk").values()),
        "candidates": list(CompanyDuplicateCandidate.objects.order_by("pk").values()),
        "keys": list(CompanyMatchKey.objects.order_by("pk").values()),
    }


def test_it_keeps_the_survivor_with_chosen_values_and_moves_contacts_and_deals(pair):
    survivor, loser = pair
    user = UserFactory()
    loser_contacts = set(loser.contacts.values_list("pk", flat=True))

    merge = merge_companies(survivor_id=survivor.pk, loser_id=loser.pk, choices={"country": "loser"}, by=user)

    assert not Company.objects.filter(pk=loser.pk).exists()
    kept = Company.objects.get(pk=survivor.pk)
    assert (kept.name, kept.domain) == ("Acme Ltd", "acme.co.uk")
    assert kept.industry == "retail"  # the survivor had none
    assert kept.employee_count == 250
    assert kept.technologies == ["aws", "gcp"]  # joined
    assert kept.is_target_account is True  # set on either: stays set
    assert kept.country == ""  # chosen
    assert loser_contacts < set(kept.contacts.values_list("pk", flat=True))
    assert kept.contacts.count() == 5
    assert Deal.objects.get(name="Shop renewal").company_id == kept.pk
    assert not CompanyDuplicateCandidate.objects.exists()  # it went with the merged-away company
    assert (merge.loser_name, merge.loser_domain, merge.merged_by) == ("Acme Shop", "shop.acme.co.uk", user)


def test_the_survivor_may_take_the_losers_domain(pair):
    survivor, loser = pair

    merge = merge_companies(survivor_id=survivor.pk, loser_id=loser.pk, choices={"domain": "loser"})

    assert Company.objects.get().domain == "shop.acme.co.uk"
    undo_company_merge(merge.pk)
    assert sorted(Company.objects.values_list("domain", flat=True)) == ["acme.co.uk", "shop.acme.co.uk"]


def test_undo_puts_back_exactly_what_was_there(pair):
    survivor, loser = pair
    before = _state()

    merge = merge_companies(survivor_id=survivor.pk, loser_id=loser.pk, choices={"domain": "loser"})
    assert _state() != before
    undo_company_merge(merge.pk)

    assert _state() == before
    merge.refresh_from_db()
    assert merge.is_undone


def test_a_contact_moved_elsewhere_after_the_merge_stays_where_it_went(pair):
    survivor, loser = pair
    moved = loser.contacts.first()
    other = CompanyFactory()
    merge = merge_companies(survivor_id=survivor.pk, loser_id=loser.pk)
    Contact.objects.filter(pk=moved.pk).update(company=other)

    undo_company_merge(merge.pk)

    assert Contact.objects.get(pk=moved.pk).company_id == other.pk
    assert Company.objects.get(pk=loser.pk).contacts.count() == 2


def test_the_contacts_segments_catch_up_after_the_merge(pair, django_capture_on_commit_callbacks):
    survivor, loser = pair
    targets = SegmentFactory(rule={"field": "company.is_target_account", "op": "is_true"})
    retail = SegmentFactory(rule={"field": "company.industry", "op": "eq", "value": "retail"})
    for segment in (targets, retail):
        refresh_segment(segment.pk)
    own = set(survivor.contacts.values_list("pk", flat=True))
    moved = set(loser.contacts.values_list("pk", flat=True))
    assert member_ids(targets) == member_ids(retail) == moved
    PendingChange.objects.all().delete()

    with django_capture_on_commit_callbacks(execute=True):
        merge = merge_companies(survivor_id=survivor.pk, loser_id=loser.pk)

    deal_contact = Deal.objects.get(name="Shop renewal").contact_id  # its deal moved
    assert set(PendingChange.objects.values_list("contact_id", flat=True)) == own | moved | {deal_contact}
    catch_up()
    assert member_ids(targets) == member_ids(retail) == own | moved

    with django_capture_on_commit_callbacks(execute=True):
        undo_company_merge(merge.pk)
    catch_up()
    assert member_ids(targets) == member_ids(retail) == moved


def test_a_company_is_not_merged_into_itself_nor_twice_nor_into_nobody(pair):
    survivor, loser = pair
    third = CompanyFactory()

    with pytest.raises(MergeRefused, match=f"Company {survivor.pk} cannot be merged into itself"):
        merge_companies(survivor_id=survivor.pk, loser_id=survivor.pk)
    with pytest.raises(MergeRefused, match="Company 999999 does not exist"):
        merge_companies(survivor_id=survivor.pk, loser_id=999999)
    merge = merge_companies(survivor_id=survivor.pk, loser_id=loser.pk)
    already = f"Company {loser.pk} was already merged into company {survivor.pk} \\(company merge {merge.pk}\\)"
    with pytest.raises(MergeRefused, match=already):
        merge_companies(survivor_id=third.pk, loser_id=loser.pk)
    with pytest.raises(MergeRefused, match=already):
        merge_companies(survivor_id=loser.pk, loser_id=third.pk)


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ({"shoe_size": "loser"}, "choices.shoe_size: not a field either company can give."),
        ({"industry": "mine"}, "choices.industry: 'mine' is not one of survivor, loser."),
        ({"created_at": "loser"}, "choices.created_at: not a field either company can give (it is not chosen"),
        ("loser", 'choices: expected an object of field: "survivor" or "loser".'),
    ],
)
def test_bad_choices_are_refused_by_name_and_nothing_changes(pair, choices, message):
    survivor, loser = pair
    before = _state()

    with pytest.raises(MergeRefused) as refused:
        merge_companies(survivor_id=survivor.pk, loser_id=loser.pk, choices=choices)

    assert str(refused.value).startswith(message)
    assert _state() == before
    assert not CompanyMerge.objects.exists()


def test_undo_is_refused_twice_and_before_a_later_merge_is_undone(pair):
    survivor, loser = pair
    third = CompanyFactory()
    first = merge_companies(survivor_id=survivor.pk, loser_id=loser.pk)
    second = merge_companies(survivor_id=third.pk, loser_id=survivor.pk)

    with pytest.raises(MergeRefused, match=f"took part in a later merge \\({second.pk}\\); undo that one first"):
        undo_company_merge(first.pk)

    undo_company_merge(second.pk)
    undo_company_merge(first.pk)
    with pytest.raises(MergeRefused, match=f"Company merge {first.pk} was already undone"):
        undo_company_merge(first.pk)
    assert Company.objects.filter(pk__in=[survivor.pk, loser.pk, third.pk]).count() == 3


def test_undo_is_refused_when_a_domain_it_gives_back_was_taken_again(pair):
    survivor, loser = pair
    merge = merge_companies(survivor_id=survivor.pk, loser_id=loser.pk, choices={"domain": "loser"})
    newcomer = CompanyFactory(domain="acme.co.uk")  # the survivor's old domain

    with pytest.raises(MergeRefused, match=f"company {newcomer.pk} \\(acme.co.uk\\) has the id or the domain"):
        undo_company_merge(merge.pk)
    assert Company.objects.filter(pk=loser.pk).exists() is False


def test_undo_leaves_out_a_pair_whose_other_company_was_deleted_since(pair):
    survivor, loser = pair
    other = CompanyFactory(name="Acme Shop", domain="acme-shop.example")
    find_company_duplicates()
    assert CompanyDuplicateCandidate.objects.get(company_b=other).company_a_id == loser.pk  # same name
    merge = merge_companies(survivor_id=survivor.pk, loser_id=loser.pk)
    Company.objects.filter(pk=other.pk).delete()

    undo_company_merge(merge.pk)

    assert list(CompanyDuplicateCandidate.objects.values_list("company_a", "company_b")) == [(survivor.pk, loser.pk)]


def _merge_queries(contacts: int) -> tuple[int, int]:
    survivor, loser = CompanyFactory(), CompanyFactory()
    ContactFactory.create_batch(contacts, company=loser)
    DealFactory.create_batch(contacts, company=loser)
    with CaptureQueriesContext(connection) as merged:
        merge = merge_companies(survivor_id=survivor.pk, loser_id=loser.pk)
    with CaptureQueriesContext(connection) as undone:
        undo_company_merge(merge.pk)
    return len(merged), len(undone)


def test_merge_and_undo_cost_the_same_few_queries_however_many_rows_move(db):
    _merge_queries(1)  # fills the per-process caches (content types)
    assert _merge_queries(1) == _merge_queries(30)


def test_the_api_merges_and_undoes(api_client, pair):
    survivor, loser = pair
    client = api_client("contacts:write")

    response = client.post(
        f"/api/v1/companies/{survivor.pk}/merge/", {"loser": loser.pk, "choices": {"country": "loser"}}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["survivor_id"], body["loser_id"], body["loser_domain"]) == (survivor.pk, loser.pk, "shop.acme.co.uk")
    assert body["choices"]["country"] == "loser"
    assert Company.objects.get().contacts.count() == 5
    undone = client.post(f"/api/v1/company-merges/{body['id']}/undo/")
    assert undone.status_code == 200
    assert undone.json()["undone_at"] is not None
    assert Company.objects.get(pk=loser.pk).contacts.count() == 3
    again = client.post(f"/api/v1/company-merges/{body['id']}/undo/")
    assert again.status_code == 409
    assert "already undone" in again.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"loser": "x"}, 400, "Expected a whole number, got str."),
        ({"loser": 999999}, 404, "No company with id 999999."),
        ({}, 400, "This field is required."),
        ({"loser": 1, "choices": {"industry": "mine"}}, 400, "is not a valid choice"),
        ({"loser": 1, "keep": "both"}, 400, "Unknown field"),
    ],
)
def test_the_api_refuses_bad_merges_saying_why(api_client, pair, body, status, says):
    survivor, _loser = pair

    response = api_client("contacts:write").post(f"/api/v1/companies/{survivor.pk}/merge/", body, format="json")

    assert response.status_code == status
    assert says in response.content.decode()


@pytest.mark.parametrize(
    ("choices", "field", "message"),
    [
        ({"shoe_size": "loser"}, "choices.shoe_size", "choices.shoe_size: not a field either company can give."),
        ({"industry": "both"}, "choices.industry", "choices.industry: 'both' is not one of survivor, loser."),
    ],
)
def test_the_api_answers_400_naming_a_choice_the_merge_cannot_make(api_client, pair, choices, field, message):
    survivor, loser = pair

    response = api_client("contacts:write").post(
        f"/api/v1/companies/{survivor.pk}/merge/", {"loser": loser.pk, "choices": choices}, format="json"
    )

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["field"], error["message"]) == ("invalid", field, message)
    assert Company.objects.filter(pk=loser.pk).exists()
    assert not CompanyMerge.objects.exists()


def test_the_api_refuses_itself_a_merged_away_company_and_a_missing_scope(api_client, pair):
    survivor, loser = pair
    client = api_client("contacts:write")

    itself = client.post(f"/api/v1/companies/{survivor.pk}/merge/", {"loser": survivor.pk}, format="json")
    assert itself.status_code == 409
    assert "cannot be merged into itself" in itself.json()["error"]["message"]
    assert client.post(f"/api/v1/companies/{survivor.pk}/merge/", {"loser": loser.pk}, format="json").status_code == 201
    twice = client.post(f"/api/v1/companies/{survivor.pk}/merge/", {"loser": loser.pk}, format="json")
    assert twice.status_code == 409
    assert f"was already merged into company {survivor.pk}" in twice.json()["error"]["message"]
    assert client.post("/api/v1/companies/999999/merge/", {"loser": survivor.pk}, format="json").status_code == 404
    assert client.post("/api/v1/company-merges/999999/undo/").status_code == 404
    read_only = api_client("contacts:read").post(f"/api/v1/companies/{survivor.pk}/merge/", {"loser": loser.pk})
    assert read_only.status_code == 403
