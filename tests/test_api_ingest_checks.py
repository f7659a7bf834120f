"""Input that used to be stored and should not have been (issue 24, defect 10): an activity whose
contact id and e-mail name different people, and dates in years no CRM record has (1900–2100)."""

import pytest

from contacts.models import Activity, Contact
from tests.factories import ContactFactory, PropertyDefinitionFactory

pytestmark = pytest.mark.django_db

ACTIVITIES_BULK = "/api/v1/activities/bulk/"
CONTACTS_BULK = "/api/v1/contacts/bulk-upsert/"
WHEN = "2026-05-01T10:00:00Z"


@pytest.fixture
def writer(api_client):
    return api_client("contacts:write", "activities:write")


def _errors(body: dict) -> dict[int, dict[str, str]]:
    return {row["index"]: {e["path"]: e["message"] for e in row["errors"]} for row in body["failed"]}


def test_an_activity_whose_contact_and_email_disagree_is_refused_naming_row_and_field(writer):
    ada = ContactFactory(email="ada@example.com")
    ContactFactory(email="bob@example.com")

    response = writer.post(
        ACTIVITIES_BULK,
        {
            "rows": [
                {"contact": ada.pk, "email": "bob@example.com", "kind": "page_view", "occurred_at": WHEN},
                {"contact": ada.pk, "email": " ADA@Example.com ", "kind": "page_view", "occurred_at": WHEN},
                {"contact": ada.pk, "email": 7, "kind": "page_view", "occurred_at": WHEN},
            ]
        },
        format="json",
    )

    body = response.json()
    assert body["created"] == 1  # the row whose e-mail is Ada's, however written
    errors = _errors(body)
    assert list(errors) == [0, 2]
    assert list(errors[0]) == ["rows[0].email"]
    assert f"not the e-mail of contact {ada.pk}" in errors[0]["rows[0].email"]
    assert "ada@example.com" not in errors[0]["rows[0].email"]  # the stored address is not disclosed
    assert list(errors[2]) == ["rows[2].email"]
    assert Activity.objects.get().contact_id == ada.pk


@pytest.mark.parametrize(
    "when", ["1899-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2101-01-01T00:00:00Z", "9999-12-31T00:00:00+00:00"]
)
def test_activities_dated_outside_1900_to_2100_are_refused(writer, when):
    contact = ContactFactory()

    response = writer.post(
        ACTIVITIES_BULK,
        {
            "rows": [
                {"contact": contact.pk, "kind": "page_view", "occurred_at": WHEN},
                {"contact": contact.pk, "kind": "page_view", "occurred_at": when},
            ]
        },
        format="json",
    )

    body = response.json()
    assert body["created"] == 1
    errors = _errors(body)
    assert list(errors) == [1]
    assert "between 1900 and 2100" in errors[1]["rows[1].occurred_at"]


def test_activities_on_the_edges_of_the_range_are_stored(writer):
    contact = ContactFactory()
    rows = [
        {"contact": contact.pk, "kind": "page_view", "occurred_at": when}
        for when in ("1900-01-01T00:00:00Z", "2100-12-31T23:59:59Z")
    ]

    body = writer.post(ACTIVITIES_BULK, {"rows": rows}, format="json").json()

    assert (body["created"], body["failed"]) == (2, [])


@pytest.mark.parametrize("field", ["customer_since", "renewal_date"])
@pytest.mark.parametrize("value", ["0001-01-01", "1899-12-31", "2101-01-01", "9999-12-31"])
def test_contact_dates_outside_1900_to_2100_are_refused_single_and_bulk(writer, field, value):
    single = writer.post("/api/v1/contacts/", {"email": "one@example.com", field: value}, format="json")
    bulk = writer.post(
        CONTACTS_BULK,
        {"rows": [{"email": "two@example.com", field: "2026-01-31"}, {"email": "three@example.com", field: value}]},
        format="json",
    )

    assert single.status_code == 400, single.json()
    assert single.json()["error"]["field"] == field
    assert "between 1900 and 2100" in single.json()["error"]["message"]
    assert list(_errors(bulk.json())) == [1]
    assert "between 1900 and 2100" in _errors(bulk.json())[1][f"rows[1].{field}"]
    assert list(Contact.objects.values_list("email", flat=True)) == ["two@example.com"]


def test_a_contact_update_with_an_implausible_date_is_refused(writer):
    contact = ContactFactory()

    response = writer.patch(f"/api/v1/contacts/{contact.pk}/", {"renewal_date": "3026-01-01"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "renewal_date"


def test_date_properties_outside_1900_to_2100_are_refused(writer):
    PropertyDefinitionFactory(key="trial_ends", type="date")

    single = writer.post(
        "/api/v1/contacts/", {"email": "one@example.com", "properties": {"trial_ends": "0999-01-01"}}, format="json"
    )
    bulk = writer.post(
        CONTACTS_BULK,
        {"rows": [{"email": "two@example.com", "properties": {"trial_ends": "2999-01-01"}}]},
        format="json",
    )

    assert single.status_code == 400
    assert "between 1900 and 2100" in single.json()["error"]["message"]
    assert "between 1900 and 2100" in _errors(bulk.json())[0]["rows[0].properties"]
    assert not Contact.objects.exists()
