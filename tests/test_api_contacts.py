"""Contacts, companies, activities and property definitions over the API."""

from datetime import timedelta

import pytest
from django.utils import timezone

from contacts.models import Company, Contact, LifecycleChange, PropertyDefinition
from segments.models import Membership
from tests.announcements import hear_changes
from tests.factories import (
    ActivityFactory,
    CompanyFactory,
    ContactFactory,
    PropertyDefinitionFactory,
    SegmentFactory,
)


@pytest.fixture
def reader(api_client):
    return api_client("contacts:read")


@pytest.fixture
def writer(api_client):
    return api_client("contacts:read", "contacts:write")


@pytest.fixture
def changed(monkeypatch):
    """Collects the contact ids announced through contacts.changes (run hooks with on_commit capture)."""
    seen = hear_changes(monkeypatch)
    return seen


def test_list_contacts_pages_by_cursor(reader):
    contacts = ContactFactory.create_batch(5)

    first = reader.get("/api/v1/contacts/", {"page_size": 2}).json()
    second = reader.get(first["next"]).json()

    assert [c["id"] for c in first["results"]] == [c.pk for c in contacts[:2]]
    assert [c["id"] for c in second["results"]] == [c.pk for c in contacts[2:4]]


def test_pages_do_not_shift_when_rows_are_added_or_removed(reader):
    contacts = ContactFactory.create_batch(4)
    first = reader.get("/api/v1/contacts/", {"page_size": 2}).json()

    contacts[0].delete()
    ContactFactory()  # newer id, belongs at the end
    second = reader.get(first["next"]).json()

    assert [c["id"] for c in second["results"]] == [contacts[2].pk, contacts[3].pk]


def test_filter_contacts_by_fields(reader):
    company = CompanyFactory(domain="acme.com")
    mql = ContactFactory(lifecycle_stage="mql", company=company, country="DE")
    ContactFactory(lifecycle_stage="customer")

    def ids(**params):
        return [c["id"] for c in reader.get("/api/v1/contacts/", params).json()["results"]]

    assert ids(lifecycle_stage="mql") == [mql.pk]
    assert ids(company_domain="https://www.ACME.com") == [mql.pk]
    assert ids(country="de") == [mql.pk]
    assert ids(email=mql.email.upper()) == [mql.pk]


def test_filter_contacts_by_segment(reader):
    member, _other = ContactFactory(), ContactFactory()
    segment = SegmentFactory(slug="hot-leads")
    Membership.objects.create(segment=segment, contact=member)

    response = reader.get("/api/v1/contacts/", {"segment": "hot-leads"})

    assert [c["id"] for c in response.json()["results"]] == [member.pk]
    assert reader.get("/api/v1/contacts/", {"segment": "nope"}).json()["results"] == []


def test_search_contacts_by_email_or_name(reader):
    ada = ContactFactory(email="ada@lovelace.org", first_name="Ada", last_name="Lovelace")
    ContactFactory(email="alan@turing.org", first_name="Alan", last_name="Turing")

    assert [c["id"] for c in reader.get("/api/v1/contacts/", {"search": "ada@"}).json()["results"]] == [ada.pk]
    assert [c["id"] for c in reader.get("/api/v1/contacts/", {"search": "lovel"}).json()["results"]] == [ada.pk]


@pytest.mark.parametrize("rows", [5, 50])
def test_contact_list_query_count_does_not_grow_with_page_size(reader, django_assert_num_queries, rows):
    companies = CompanyFactory.create_batch(3)
    for i in range(rows):
        ContactFactory(company=companies[i % 3])
    reader.get("/api/v1/contacts/")  # first use of the key records last_used_at

    with django_assert_num_queries(2):  # API key, page (company joined)
        response = reader.get("/api/v1/contacts/", {"page_size": rows})

    assert len(response.json()["results"]) == rows


@pytest.mark.parametrize("rows", [5, 50])
def test_other_lists_query_count_does_not_grow_with_page_size(reader, django_assert_num_queries, rows):
    ActivityFactory.create_batch(rows)
    for i in range(rows):
        PropertyDefinitionFactory(key=f"p{i}")
    reader.get("/api/v1/companies/")  # first use of the key records last_used_at

    for url in ["/api/v1/companies/", "/api/v1/activities/", "/api/v1/property-definitions/"]:
        with django_assert_num_queries(2):
            response = reader.get(url, {"page_size": rows})
        assert response.status_code == 200, response.json()


def test_create_contact_normalises_email_records_stage_and_announces_change(
    writer, changed, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = writer.post(
            "/api/v1/contacts/",
            {"email": " Grace@Example.COM ", "first_name": "Grace", "lifecycle_stage": "mql", "country": "us"},
            format="json",
        )

    assert response.status_code == 201, response.json()
    contact = Contact.objects.get()
    assert contact.email == "grace@example.com"
    assert contact.country == "US"
    assert LifecycleChange.objects.get().to_stage == "mql"
    assert changed == [[contact.pk]]


def test_create_contact_with_existing_email_in_other_case_is_a_409_conflict(writer):
    ContactFactory(email="grace@example.com")

    response = writer.post("/api/v1/contacts/", {"email": "GRACE@example.com"}, format="json")

    assert response.status_code == 409
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == ("conflict", "email")


def test_a_taken_email_beside_a_bad_field_is_400_naming_both(writer):
    ContactFactory(email="grace@example.com")

    response = writer.post("/api/v1/contacts/", {"email": "grace@example.com", "phone": "12"}, format="json")

    assert response.status_code == 400
    assert {e["path"] for e in response.json()["error"]["details"]["errors"]} == {"email", "phone"}


def test_create_contact_with_undeclared_property_names_it(writer):
    response = writer.post(
        "/api/v1/contacts/", {"email": "a@example.com", "properties": {"shoe_size": 44}}, format="json"
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "properties"
    assert "props.shoe_size" in error["message"]


def test_update_and_delete_contact(writer, changed, django_capture_on_commit_callbacks):
    contact = ContactFactory(lifecycle_stage="lead")

    with django_capture_on_commit_callbacks(execute=True):
        response = writer.patch(f"/api/v1/contacts/{contact.pk}/", {"lifecycle_stage": "sql"}, format="json")
    assert response.status_code == 200
    assert response.json()["lifecycle_stage"] == "sql"
    assert LifecycleChange.objects.filter(contact=contact, to_stage="sql").exists()

    assert writer.get(f"/api/v1/contacts/{contact.pk}/").json()["email"] == contact.email
    with django_capture_on_commit_callbacks(execute=True):
        assert writer.delete(f"/api/v1/contacts/{contact.pk}/").status_code == 204
    assert not Contact.objects.exists()
    assert changed == [[contact.pk], [contact.pk]]


def test_missing_contact_is_json_404(reader):
    response = reader.get("/api/v1/contacts/999999/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_company_crud_and_change_announces_its_contacts(writer, changed, django_capture_on_commit_callbacks):
    response = writer.post("/api/v1/companies/", {"name": "Acme", "domain": "https://www.Acme.com/"}, format="json")
    assert response.status_code == 201, response.json()
    company = Company.objects.get()
    assert company.domain == "acme.com"
    contact = ContactFactory(company=company)

    with django_capture_on_commit_callbacks(execute=True):
        response = writer.patch(f"/api/v1/companies/{company.pk}/", {"employee_count": 500}, format="json")

    assert response.status_code == 200
    assert changed == [[contact.pk]]
    assert writer.get("/api/v1/companies/", {"domain": "acme.com"}).json()["results"][0]["employee_count"] == 500
    assert writer.delete(f"/api/v1/companies/{company.pk}/").status_code == 204


def test_list_activities_by_contact_kind_topic_and_time(reader):
    contact = ContactFactory()
    now = timezone.now()
    hit = ActivityFactory(contact=contact, kind="email_click", topic="Cloud", occurred_at=now - timedelta(days=2))
    ActivityFactory(contact=contact, kind="email_click", topic="cloud", occurred_at=now - timedelta(days=20))
    ActivityFactory(contact=contact, kind="page_view", topic="cloud", occurred_at=now - timedelta(days=2))
    ActivityFactory(kind="email_click", topic="cloud", occurred_at=now - timedelta(days=2))

    response = reader.get(
        "/api/v1/activities/",
        {
            "contact": contact.pk,
            "kind": "email_click",
            "topic": "cloud",
            "occurred_after": (now - timedelta(days=7)).isoformat(),
        },
    )

    assert [a["id"] for a in response.json()["results"]] == [hit.pk]


def test_property_definitions_list_and_create(writer):
    PropertyDefinitionFactory(key="plan", type="choice", choices=["free", "pro"])

    response = writer.post(
        "/api/v1/property-definitions/",
        {"key": "nps", "label": "NPS", "type": "number", "layer": "psychographic"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert {d["key"] for d in writer.get("/api/v1/property-definitions/").json()["results"]} == {"plan", "nps"}


def test_property_definition_choice_without_choices_is_400(writer):
    response = writer.post(
        "/api/v1/property-definitions/",
        {"key": "tier", "label": "Tier", "type": "choice", "layer": "value"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "choices"
    assert not PropertyDefinition.objects.exists()
