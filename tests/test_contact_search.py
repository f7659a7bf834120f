"""Contact search for Sales reps: by name, email or company; owner defaults to mine; a count capped at 10,000."""

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.models import ContactMetrics
from segments.models import Membership
from tests.factories import CompanyFactory, ContactFactory, SegmentFactory, UserFactory

pytestmark = pytest.mark.django_db


def names(response) -> list[str]:
    return [contact.email for contact in response.context["page"].rows]


def test_it_shows_only_my_contacts_by_default(client, sales_user):
    mine = ContactFactory(owner=sales_user, email="mine@example.com")
    ContactFactory(owner=UserFactory(), email="theirs@example.com")
    client.force_login(sales_user)
    response = client.get(reverse("contacts-search"))
    assert names(response) == [mine.email]
    assert response.context["form"]["owner"].value() == "mine"


def test_it_searches_everyone_when_asked(client, sales_user):
    ContactFactory(owner=sales_user, email="mine@example.com")
    ContactFactory(owner=UserFactory(), email="theirs@example.com")
    ContactFactory(owner=None, email="nobodys@example.com")
    client.force_login(sales_user)
    assert len(names(client.get(reverse("contacts-search"), {"owner": "any"}))) == 3
    assert names(client.get(reverse("contacts-search"), {"owner": "none"})) == ["nobodys@example.com"]


def test_it_finds_by_name_email_and_company(client, sales_user):
    acme = CompanyFactory(name="Acme Robotics", domain="acme.io")
    ada = ContactFactory(first_name="Ada", last_name="Lovelace", email="ada@analytical.org", owner=sales_user)
    grace = ContactFactory(first_name="Grace", last_name="Hopper", email="grace@navy.mil", owner=sales_user)
    alan = ContactFactory(first_name="Alan", last_name="Turing", email="alan@acme.io", company=acme, owner=sales_user)
    client.force_login(sales_user)

    def search(q: str) -> list[str]:
        return names(client.get(reverse("contacts-search"), {"q": q}))

    assert search("lovelace") == [ada.email]
    assert search("Ada Love") == [ada.email]
    assert search("grace@navy") == [grace.email]
    assert search("acme") == [alan.email]
    assert search("@acme.io") == [alan.email]
    assert search("nobody-like-this") == []


def test_it_filters_by_segment_and_stage(client, sales_user):
    segment = SegmentFactory(name="Cloud buyers")
    in_segment = ContactFactory(owner=sales_user, lifecycle_stage="mql")
    ContactFactory(owner=sales_user, lifecycle_stage="mql")
    customer = ContactFactory(owner=sales_user, lifecycle_stage="customer")
    Membership.objects.create(segment=segment, contact=in_segment)
    Membership.objects.create(segment=segment, contact=customer)
    client.force_login(sales_user)

    response = client.get(reverse("contacts-search"), {"segment": segment.pk})
    assert sorted(names(response)) == sorted([in_segment.email, customer.email])
    response = client.get(reverse("contacts-search"), {"segment": segment.pk, "stage": "customer"})
    assert names(response) == [customer.email]


def test_a_bad_filter_value_is_reported_not_a_500(client, sales_user):
    client.force_login(sales_user)
    response = client.get(reverse("contacts-search"), {"segment": "999999", "stage": "pirate"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Segment: Select a valid choice" in html
    assert "Lifecycle stage: Select a valid choice" in html


def test_it_pages_with_a_bounded_count(client, sales_user, django_assert_max_num_queries):
    ContactFactory.create_batch(30, owner=sales_user)
    client.force_login(sales_user)
    with django_assert_max_num_queries(9) as captured:
        first = client.get(reverse("contacts-search"))
    counts = [query["sql"] for query in captured.captured_queries if "COUNT(" in query["sql"].upper()]
    assert len(counts) == 1
    assert "LIMIT 10001" in counts[0]  # never a count of every contact
    assert len(first.context["page"].rows) == 25
    assert first.context["page"].has_next
    assert 'rel="next"' in first.content.decode()
    assert '<small id="results-count">1–25 of 30</small>' in first.content.decode()

    with django_assert_max_num_queries(8) as captured:  # the last page knows its total: no count
        second = client.get(reverse("contacts-search"), {"page": 2})
    assert not any("COUNT(" in query["sql"].upper() for query in captured.captured_queries)
    assert len(second.context["page"].rows) == 5
    assert not second.context["page"].has_next
    assert set(names(first)).isdisjoint(names(second))
    assert '<small id="results-count">26–30 of 30</small>' in second.content.decode()


@pytest.mark.parametrize("query", [{}, {"q": "kim", "owner": "any"}, {"q": "kim"}])
def test_beyond_the_cap_it_says_so(client, sales_user, monkeypatch, query):
    monkeypatch.setattr("segments.pages.paging.COUNT_CAP", 26)
    ContactFactory.create_batch(30, owner=sales_user, first_name="Kim")
    client.force_login(sales_user)
    page = client.get(reverse("contacts-search"), query)
    assert '<small id="results-count">1–25 of 26+</small>' in page.content.decode()
    monkeypatch.setattr("segments.pages.paging.COUNT_CAP", 30)
    page = client.get(reverse("contacts-search"), query)
    assert '<small id="results-count">1–25 of 30</small>' in page.content.decode()


def test_query_count_does_not_grow_with_results(client, sales_user, django_assert_num_queries):
    # session, user, user and group permissions, owner choices, segment choices, the page of contacts
    # (with company, owner and metrics joined)
    ContactFactory.create_batch(3, owner=sales_user, company=CompanyFactory())
    client.force_login(sales_user)
    with django_assert_num_queries(7):
        client.get(reverse("contacts-search"))
    ContactFactory.create_batch(20, owner=sales_user, company=CompanyFactory())
    with django_assert_num_queries(7):
        response = client.get(reverse("contacts-search"))
    assert len(response.context["page"].rows) == 23


def test_it_filters_by_engagement_level(client, sales_user):
    hot = ContactFactory(owner=sales_user)
    cold = ContactFactory(owner=sales_user)
    ContactFactory(owner=sales_user)  # no metrics yet
    for contact, level in ((hot, "highly_engaged"), (cold, "disengaged")):
        ContactMetrics.objects.create(
            contact=contact,
            as_of=timezone.now(),
            engagement_level=level,
            email_engagement_level="disengaged",
            web_activity_level="dormant",
        )
    client.force_login(sales_user)
    response = client.get(reverse("contacts-search"), {"level": "highly_engaged"})
    assert names(response) == [hot.email]
    assert "Highly engaged" in response.content.decode()


def test_searching_everyone_matches_indexed_name_parts(client, sales_user):
    acme = CompanyFactory(name="Acme Robotics", domain="acme.io")
    ada = ContactFactory(first_name="Ada", last_name="Lovelace", email="countess@analytical.org", company=acme)
    client.force_login(sales_user)

    def search(q: str) -> list[str]:
        return names(client.get(reverse("contacts-search"), {"q": q, "owner": "any"}))

    assert search("Ada Lovelace") == [ada.email]
    assert search("lovelace") == [ada.email]
    assert search("ada") == [ada.email]
    assert search("countess@") == [ada.email]
    assert search("acme rob") == []  # every word must match: "rob" matches nothing
    assert search("acme") == [ada.email]
    assert search("@acme") == [ada.email]


def test_searching_everyone_merges_the_ways_a_word_matches_in_name_order(client, sales_user, django_assert_num_queries):
    # given contacts found by last name, by email, by company, and one found two ways
    bench = CompanyFactory(name="Benchmark Labs", domain="benchmark.test")
    expected = [
        ContactFactory(first_name="Zed", last_name="Aardvark", email="ben.a@x.test"),  # email
        ContactFactory(first_name="Amy", last_name="Benson", email="amy@x.test"),  # last name
        ContactFactory(first_name="Ben", last_name="Benz", email="benz@x.test"),  # last name and email
        *(ContactFactory(first_name="Kim", last_name=f"Coder{i:02}", company=bench) for i in range(30)),  # company
        ContactFactory(first_name="Ben", last_name="Other", email="other@x.test"),  # first name
    ]
    ContactFactory(first_name="Amy", last_name="Smith", email="amy.ben@x.test")  # "ben" inside a word: no match
    client.force_login(sales_user)

    # when the rep pages through everyone matching "ben"
    # 6 for the page around it, the walk's horizon, 4 ways, the page's rows, 4 ways counted up to 10,001
    with django_assert_num_queries(16):
        first = client.get(reverse("contacts-search"), {"q": "Ben", "owner": "any"})
    second = client.get(reverse("contacts-search"), {"q": "Ben", "owner": "any", "page": 2})

    # then every match shows once, in name order, across both pages
    assert first.context["page"].has_next
    assert not second.context["page"].has_next
    assert names(first) + names(second) == [contact.email for contact in expected]


@pytest.mark.parametrize("owner", ["any", "mine"])
@pytest.mark.parametrize("walk", [2, 31, 1000])
def test_a_way_gives_the_same_pages_whether_found_by_walking_or_sorting(client, sales_user, monkeypatch, walk, owner):
    # given email matches early and late in the name order, and a walk that ends before, among
    # or after them (31: the first page is found by walking, the second by sorting)
    monkeypatch.setattr("segments.pages.contact_search.WALK", walk)
    early = [ContactFactory(last_name=f"Able{i:02}", email=f"zed{i}@x.test", owner=sales_user) for i in range(30)]
    ContactFactory.create_batch(4, last_name="Middle", owner=sales_user)
    late = [ContactFactory(last_name=f"Young{i}", email=f"zed-late{i}@x.test", owner=sales_user) for i in range(2)]
    client.force_login(sales_user)

    # when everyone, or the rep's own contacts, are searched for the email prefix, page by page
    first = client.get(reverse("contacts-search"), {"q": "zed", "owner": owner})
    second = client.get(reverse("contacts-search"), {"q": "zed", "owner": owner, "page": 2})

    # then every match is listed once, in name order
    assert names(first) + names(second) == [contact.email for contact in early + late]
