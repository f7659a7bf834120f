"""The schema says what the server does: searches that work, bounds, 409s, strict types and links."""

import pytest

from segments.models import Membership, MembershipChange
from tests.factories import ContactFactory, PropertyDefinitionFactory, SegmentFactory


@pytest.fixture
def schema(api_client):
    return api_client("contacts:read").get("/api/schema/?format=json").json()


@pytest.fixture
def everything(api_client):
    return api_client("contacts:read", "contacts:write", "segments:read", "segments:write")


def parameter(schema: dict, path: str, name: str, method: str = "get") -> dict:
    return next(p for p in schema["paths"][path][method]["parameters"] if p["name"] == name)


def test_search_is_documented_only_where_it_works_and_works_there(schema, everything):
    PropertyDefinitionFactory(key="plan", label="Plan")
    PropertyDefinitionFactory(key="tier", label="Tier")
    segment = SegmentFactory(slug="s", kind="static", rule=None)
    ada = ContactFactory(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    grace = ContactFactory(email="grace@example.com", first_name="Grace", last_name="Hopper")
    for contact in (ada, grace):
        Membership.objects.create(segment=segment, contact=contact)
        MembershipChange.objects.create(segment=segment, contact=contact, kind="join", reason="manual")

    found = {
        "/api/v1/property-definitions/": [d["key"] for d in everything.get(
            "/api/v1/property-definitions/", {"search": "pla"}).json()["results"]],
        "/api/v1/segments/{slug}/members/": [m["contact"]["email"] for m in everything.get(
            "/api/v1/segments/s/members/", {"search": "ada"}).json()["results"]],
        "/api/v1/segments/{slug}/history/": [c["contact"] for c in everything.get(
            "/api/v1/segments/s/history/", {"search": "grace"}).json()["results"]],
    }  # fmt: skip

    assert found == {
        "/api/v1/property-definitions/": ["plan"],
        "/api/v1/segments/{slug}/members/": ["ada@example.com"],
        "/api/v1/segments/{slug}/history/": [grace.pk],
    }
    for path in found:
        assert parameter(schema, path, "search")["schema"]["type"] == "string"
    assert "search" not in {p["name"] for p in schema["paths"]["/api/v1/activities/"]["get"]["parameters"]}


def test_searching_history_by_email_needs_contacts_read(api_client):
    SegmentFactory(slug="s")

    response = api_client("segments:read").get("/api/v1/segments/s/history/", {"search": "ada"})

    assert response.status_code == 403
    assert "contacts:read" in response.json()["error"]["message"]


def test_the_schema_documents_bounds_conflicts_and_closed_bodies(schema):
    components = schema["components"]["schemas"]

    page_size = parameter(schema, "/api/v1/contacts/", "page_size")["schema"]
    assert (page_size["minimum"], page_size["maximum"]) == (1, 500)
    assert parameter(schema, "/api/v1/contacts/", "company")["schema"]["minimum"] == 1
    assert parameter(schema, "/api/v1/personalization/", "contact")["schema"]["minimum"] == 1
    assert components["CompanyRequest"]["properties"]["domain"]["pattern"].startswith("^[A-Za-z0-9]")
    assert components["ContactRequest"]["additionalProperties"] is False
    assert "409" in schema["paths"]["/api/v1/contacts/"]["post"]["responses"]
    assert "409" in schema["paths"]["/api/v1/segments/{slug}/members/add/"]["post"]["responses"]
    assert "413" in schema["paths"]["/api/v1/segments/"]["post"]["responses"]
    links = schema["paths"]["/api/v1/segments/"]["post"]["responses"]["201"]["links"]
    assert links["segments_retrieve"]["parameters"] == {"slug": "$response.body#/slug"}
    rule = components["SegmentRequest"]["properties"]["rule"]
    assert "required for dynamic and suppression" in rule["description"]


def test_declared_custom_properties_are_in_the_schema(api_client):
    PropertyDefinitionFactory(key="tier", type="choice", choices=["gold", "silver"])

    schema = api_client("contacts:read").get("/api/schema/?format=json").json()

    properties = schema["components"]["schemas"]["ContactRequest"]["properties"]["properties"]
    assert properties["properties"]["tier"]["enum"] == ["gold", "silver", None]
    assert properties["additionalProperties"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.com", "lead_score": "5"}, "lead_score"),
        ({"email": "a@example.com", "do_not_contact": 0}, "do_not_contact"),
        ({"email": "a@example.com", "first_name": 7}, "first_name"),
        ({"email": "a@example.com", "lifetime_value": 12.5}, "lifetime_value"),
    ],
)
def test_values_of_another_json_type_are_refused(everything, body, field):
    response = everything.post("/api/v1/contacts/", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_an_empty_query_parameter_is_the_same_as_none(everything):
    ContactFactory()

    response = everything.get("/api/v1/contacts/?lifecycle_stage=&page_size=&cursor=&company=")

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_a_boolean_filter_refuses_what_is_not_true_or_false(everything):
    response = everything.get("/api/v1/contacts/", {"do_not_contact": "-58800"})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "do_not_contact"


def test_a_taken_slug_is_a_conflict(everything):
    SegmentFactory(slug="taken")

    response = everything.post("/api/v1/segments/", {"name": "N", "slug": "taken", "kind": "static"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["field"] == "slug"
