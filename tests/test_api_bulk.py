"""Bulk ingest: contacts/bulk-upsert/, companies/bulk-upsert/ and activities/bulk/."""

import pytest

from contacts.ingest import MAX_ROWS
from contacts.models import Activity, Company, Contact, LifecycleChange
from tests.announcements import hear_changes
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory, PropertyDefinitionFactory

CONTACTS_BULK = "/api/v1/contacts/bulk-upsert/"
COMPANIES_BULK = "/api/v1/companies/bulk-upsert/"
ACTIVITIES_BULK = "/api/v1/activities/bulk/"


@pytest.fixture
def writer(api_client):
    return api_client("contacts:write", "activities:write")


def test_contacts_upsert_creates_updates_and_reports_bad_rows(writer):
    stored = ContactFactory(email="ada@example.com", first_name="Ada", last_name="Byron", lifecycle_stage="lead")

    response = writer.post(
        CONTACTS_BULK,
        {
            "rows": [
                {"email": "ADA@example.com", "last_name": "Lovelace", "lifecycle_stage": "customer"},
                {"email": "grace@example.com", "first_name": "Grace", "company_domain": "www.navy.mil"},
                {"email": "not-an-email", "first_name": "X"},
                {"email": "alan@example.com", "lifecycle_stage": "wizard", "shoe_size": 44},
                "just a string",
            ]
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    grace = Contact.objects.get(email="grace@example.com")
    assert body["updated"] == [{"index": 0, "id": stored.pk, "key": "ada@example.com"}]
    assert body["created"] == [{"index": 1, "id": grace.pk, "key": "grace@example.com"}]
    assert [row["index"] for row in body["failed"]] == [2, 3, 4]
    assert body["failed"][0]["errors"][0]["path"] == "rows[2].email"
    assert {e["path"] for e in body["failed"][1]["errors"]} == {"rows[3].lifecycle_stage", "rows[3].shoe_size"}
    assert body["failed"][2]["errors"][0]["path"] == "rows[4]"
    assert Contact.objects.count() == 2

    stored.refresh_from_db()
    assert (stored.first_name, stored.last_name, stored.lifecycle_stage) == ("Ada", "Lovelace", "customer")
    assert stored.customer_since is not None
    assert grace.company.domain == "navy.mil"
    assert grace.lifecycle_stage == "lead"
    assert set(LifecycleChange.objects.filter(contact=stored).values_list("from_stage", "to_stage")) >= {
        ("lead", "customer")
    }
    assert LifecycleChange.objects.filter(contact=grace, from_stage=None, to_stage="lead").exists()


def test_contacts_upsert_matches_companies_by_domain(writer):
    acme = CompanyFactory(domain="acme.com", name="Acme Inc")

    writer.post(
        CONTACTS_BULK,
        {
            "rows": [
                {"email": "a@acme.com", "company_domain": "https://ACME.com/about"},
                {"email": "b@new.io", "company_domain": "new.io", "company_name": "New IO"},
            ]
        },
        format="json",
    )

    assert Contact.objects.get(email="a@acme.com").company == acme
    assert Company.objects.get(domain="new.io").name == "New IO"
    assert Company.objects.get(domain="acme.com").name == "Acme Inc"


def test_contacts_upsert_merges_properties_and_checks_them_per_row(writer):
    PropertyDefinitionFactory(key="plan", type="choice", choices=["free", "pro"])
    PropertyDefinitionFactory(key="seats", type="number")
    ContactFactory(email="a@example.com", properties={"plan": "free", "seats": 3})

    response = writer.post(
        CONTACTS_BULK,
        {
            "rows": [
                {"email": "a@example.com", "properties": {"plan": "pro"}},
                {"email": "b@x.io", "properties": {"plan": 7}},
            ]
        },
        format="json",
    )

    assert Contact.objects.get(email="a@example.com").properties == {"plan": "pro", "seats": 3}
    failed = response.json()["failed"]
    assert failed[0]["index"] == 1
    assert failed[0]["errors"][0]["path"] == "rows[1].properties"
    assert "props.plan" in failed[0]["errors"][0]["message"]


def test_contacts_upsert_refuses_repeated_email_in_one_request(writer):
    response = writer.post(
        CONTACTS_BULK, {"rows": [{"email": "a@example.com"}, {"email": "A@example.com "}]}, format="json"
    )

    body = response.json()
    assert [r["index"] for r in body["created"]] == [0]
    assert "rows[0]" in body["failed"][0]["errors"][0]["message"]


def test_contacts_upsert_keeps_unsent_fields(writer):
    ContactFactory(email="a@example.com", job_title="CTO", lead_score=40, country="DE")

    writer.post(CONTACTS_BULK, {"rows": [{"email": "a@example.com", "lead_score": 55}]}, format="json")

    contact = Contact.objects.get()
    assert (contact.job_title, contact.lead_score, contact.country) == ("CTO", 55, "DE")


def test_contacts_upsert_unknown_owner_is_a_row_error(writer, ops_user):
    response = writer.post(
        CONTACTS_BULK,
        {"rows": [{"email": "a@example.com", "owner": ops_user.pk}, {"email": "b@example.com", "owner": 999999}]},
        format="json",
    )

    assert Contact.objects.get().owner == ops_user
    assert response.json()["failed"][0]["errors"][0]["path"] == "rows[1].owner"


def test_contacts_upsert_announces_touched_contacts_once(writer, monkeypatch, django_capture_on_commit_callbacks):
    seen = hear_changes(monkeypatch)

    with django_capture_on_commit_callbacks(execute=True):
        writer.post(CONTACTS_BULK, {"rows": [{"email": "a@example.com"}, {"email": "b@example.com"}]}, format="json")

    assert seen == [sorted(Contact.objects.values_list("id", flat=True))]


def test_contacts_upsert_of_what_is_stored_writes_and_announces_nothing(
    writer, monkeypatch, django_capture_on_commit_callbacks
):
    rows = [{"email": "ada@example.com", "first_name": "Ada", "company_domain": "acme.com", "lead_score": 40},
            {"email": "bob@example.com", "city": "Paris"}]  # fmt: skip
    writer.post(CONTACTS_BULK, {"rows": rows}, format="json")
    stored = {c["email"]: c for c in Contact.objects.values()}
    seen = hear_changes(monkeypatch)

    with django_capture_on_commit_callbacks(execute=True):
        response = writer.post(CONTACTS_BULK, {"rows": [rows[0], {**rows[1], "city": "Lyon"}]}, format="json")

    body = response.json()
    bob = Contact.objects.get(email="bob@example.com")
    # both matched a stored contact (the API's "updated"); only bob's changed, and only he is announced
    assert [r["key"] for r in body["updated"]] == ["ada@example.com", "bob@example.com"]
    assert seen == [[bob.pk]]
    assert Contact.objects.values().get(email="ada@example.com") == stored["ada@example.com"]  # updated_at too
    assert (bob.city, bob.updated_at > stored["bob@example.com"]["updated_at"]) == ("Lyon", True)


def test_companies_upsert_of_what_is_stored_announces_nothing(writer, monkeypatch, django_capture_on_commit_callbacks):
    acme = CompanyFactory(domain="acme.com", name="Acme", employee_count=10)
    ContactFactory(company=acme)
    seen = hear_changes(monkeypatch)

    with django_capture_on_commit_callbacks(execute=True):
        writer.post(COMPANIES_BULK, {"rows": [{"domain": "acme.com", "employee_count": 10}]}, format="json")

    assert seen == []
    assert Company.objects.values("updated_at").get() == {"updated_at": acme.updated_at}


def test_bulk_over_the_limit_is_413_with_the_limit(writer):
    rows = [{"email": f"c{i}@example.com"} for i in range(MAX_ROWS + 1)]

    response = writer.post(CONTACTS_BULK, {"rows": rows}, format="json")

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"limit": MAX_ROWS, "received": MAX_ROWS + 1}
    assert "10000" in error["message"]
    assert not Contact.objects.exists()


def test_bulk_without_rows_list_is_400(writer):
    response = writer.post(CONTACTS_BULK, [{"email": "a@example.com"}], format="json")

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "rows"


def test_bulk_upsert_needs_write_scope(api_client):
    response = api_client("contacts:read").post(CONTACTS_BULK, {"rows": []}, format="json")

    assert response.status_code == 403
    assert "'contacts:write'" in response.json()["error"]["message"]


def test_companies_upsert_by_domain(writer):
    acme = CompanyFactory(domain="acme.com", name="Acme", employee_count=10)

    response = writer.post(
        COMPANIES_BULK,
        {
            "rows": [
                {"domain": "www.acme.com", "employee_count": 250},
                {"domain": "globex.com", "name": "Globex", "country": "us", "technologies": ["aws"]},
                {"domain": "not a domain"},
                {"domain": "x.io", "employee_count": -5},
            ]
        },
        format="json",
    )

    body = response.json()
    assert body["updated"] == [{"index": 0, "id": acme.pk, "key": "acme.com"}]
    assert [r["key"] for r in body["created"]] == ["globex.com"]
    assert [(r["index"], r["errors"][0]["path"]) for r in body["failed"]] == [
        (2, "rows[2].domain"),
        (3, "rows[3].employee_count"),
    ]
    acme.refresh_from_db()
    assert (acme.name, acme.employee_count) == ("Acme", 250)
    globex = Company.objects.get(domain="globex.com")
    assert (globex.country, globex.technologies) == ("US", ["aws"])


def test_activities_bulk_is_idempotent_by_external_id(writer):
    contact = ContactFactory(email="a@example.com")
    rows = [
        {"external_id": "evt-1", "contact": contact.pk, "kind": "email_click", "occurred_at": "2026-05-01T10:00:00Z"},
        {"external_id": "evt-2", "email": "A@example.com", "kind": "page_view", "occurred_at": "2026-05-01T11:00:00Z",
         "url": "https://example.com/pricing", "topic": "pricing", "value": 12.5},
        {"external_id": "evt-2", "email": "a@example.com", "kind": "page_view", "occurred_at": "2026-05-01T11:00:00Z"},
    ]  # fmt: skip

    first = writer.post(ACTIVITIES_BULK, {"rows": rows}, format="json").json()
    again = writer.post(ACTIVITIES_BULK, {"rows": rows}, format="json").json()

    assert (first["created"], first["duplicates"], first["failed"]) == (2, 1, [])
    assert (again["created"], again["duplicates"], again["failed"]) == (0, 3, [])
    assert Activity.objects.count() == 2
    assert str(Activity.objects.get(external_id="evt-2").value) == "12.50"


def test_activities_bulk_reports_unknown_contacts_and_bad_rows(writer):
    ContactFactory(email="a@example.com")

    response = writer.post(
        ACTIVITIES_BULK,
        {
            "rows": [
                {"email": "nobody@example.com", "kind": "page_view", "occurred_at": "2026-05-01T10:00:00Z"},
                {"contact": 987654, "kind": "page_view", "occurred_at": "2026-05-01T10:00:00Z"},
                {"email": "a@example.com", "kind": "teleport", "occurred_at": "yesterday"},
                {"kind": "page_view", "occurred_at": "2026-05-01T10:00:00Z"},
                {"email": "a@example.com", "kind": "page_view", "occurred_at": "2026-05-01T10:00:00Z"},
            ]
        },
        format="json",
    )

    body = response.json()
    assert body["created"] == 1
    paths = {r["index"]: sorted(e["path"] for e in r["errors"]) for r in body["failed"]}
    assert paths == {
        0: ["rows[0].email"],
        1: ["rows[1].contact"],
        2: ["rows[2].kind", "rows[2].occurred_at"],
        3: ["rows[3].contact"],
    }
    assert "nobody@example.com" in body["failed"][0]["errors"][0]["message"]


def test_activities_bulk_counts_already_stored_external_ids_as_duplicates(writer):
    ActivityFactory(external_id="evt-1")
    contact = ContactFactory()

    body = writer.post(
        ACTIVITIES_BULK,
        {"rows": [{"external_id": "evt-1", "contact": contact.pk, "kind": "page_view", "occurred_at": "2026-01-01"}]},
        format="json",
    ).json()

    assert (body["created"], body["duplicates"]) == (0, 1)


def test_activities_bulk_needs_activities_write(api_client):
    response = api_client("contacts:write").post(ACTIVITIES_BULK, {"rows": []}, format="json")

    assert response.status_code == 403
    assert "'activities:write'" in response.json()["error"]["message"]
