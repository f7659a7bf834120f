"""Contact data needs contacts:read, whichever segment endpoint it would come out of (issue 24, defect 3).

A key with only segments:read used to read e-mails and names from a segment's members, and could
recover any field (a phone number digit by digit) through the preview's count.
"""

import pytest
from django.utils import timezone

from segments.models import Membership, MembershipChange
from tests.factories import ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db

PHONE_PREFIX = {"field": "phone", "op": "starts_with", "value": "+1555"}
CLICKED = {"event": {"kind": "email_click"}, "op": "performed"}


@pytest.fixture
def segments_only(api_client):
    return api_client("segments:read")


@pytest.fixture
def segments_and_contacts(api_client):
    return api_client("segments:read", "contacts:read")


@pytest.fixture
def segment_with_a_member():
    segment = SegmentFactory(slug="vip")
    contact = ContactFactory(email="secret.person@example.com", first_name="Secret", phone="+15551234567")
    Membership.objects.create(segment=segment, contact=contact)
    return segment, contact


def _refusal(response) -> str:
    assert response.status_code == 403, response.json()
    error = response.json()["error"]
    assert error["code"] == "missing_scope"
    assert "contacts:read" in error["message"]
    return response.content.decode()


def test_members_need_contacts_read(segments_only, segments_and_contacts, segment_with_a_member):
    refused = segments_only.get("/api/v1/segments/vip/members/")
    allowed = segments_and_contacts.get("/api/v1/segments/vip/members/")

    assert "secret.person@example.com" not in _refusal(refused)
    assert allowed.status_code == 200
    assert allowed.json()["results"][0]["contact"]["email"] == "secret.person@example.com"


@pytest.mark.parametrize(
    "rule",
    [
        PHONE_PREFIX,
        CLICKED,
        {"all": [{"in_segment": "vip"}, {"not": {"any": [PHONE_PREFIX]}}]},
        {"field": "company.employee_count", "op": "gte", "value": 10},
        {"field": "metrics.engagement_score", "op": "top_percent", "value": 10},
    ],
    ids=["field", "event", "nested", "company", "metrics"],
)
def test_previewing_a_rule_on_contact_data_needs_contacts_read(
    rule, segments_only, segments_and_contacts, segment_with_a_member
):
    refused = segments_only.post("/api/v1/segments/preview/", {"rule": rule}, format="json")
    allowed = segments_and_contacts.post("/api/v1/segments/preview/", {"rule": rule}, format="json")

    body = _refusal(refused)
    assert '"count"' not in body
    assert allowed.status_code == 200, allowed.json()
    assert "count" in allowed.json()


@pytest.mark.parametrize("rule", [PHONE_PREFIX, CLICKED, {"not": {"all": [{"in_segment": "vip"}, PHONE_PREFIX]}}])
def test_validating_a_rule_on_contact_data_needs_contacts_read(rule, segments_only, segments_and_contacts):
    SegmentFactory(slug="vip")

    refused = segments_only.post("/api/v1/segments/validate/", {"rule": rule}, format="json")
    allowed = segments_and_contacts.post("/api/v1/segments/validate/", {"rule": rule}, format="json")

    _refusal(refused)
    assert allowed.json() == {"valid": True, "errors": []}


def test_a_rule_on_memberships_alone_previews_with_segments_read_without_a_sample(
    segments_only, segments_and_contacts, segment_with_a_member
):
    rule = {"any": [{"in_segment": "vip"}]}

    counted = segments_only.post("/api/v1/segments/preview/", {"rule": rule}, format="json")
    sampled = segments_and_contacts.post("/api/v1/segments/preview/", {"rule": rule}, format="json")
    validated = segments_only.post("/api/v1/segments/validate/", {"rule": rule}, format="json")

    assert counted.json() == {"count": 1, "sample": []}
    assert sampled.json()["sample"][0]["email"] == "secret.person@example.com"
    assert validated.json() == {"valid": True, "errors": []}


def test_the_phone_cannot_be_recovered_digit_by_digit(segments_only, segment_with_a_member):
    answers = []
    for digit in "0123456789":
        rule = {"field": "phone", "op": "starts_with", "value": "+1555" + digit}
        answers.append(segments_only.post("/api/v1/segments/preview/", {"rule": rule}, format="json").status_code)

    assert answers == [403] * 10


def test_history_details_need_contacts_read(segments_only, segments_and_contacts, segment_with_a_member):
    segment, contact = segment_with_a_member
    detail = {"result": True, "conditions": [{"text": "phone starts_with +1555: true (+15551234567)"}]}
    MembershipChange.objects.create(
        segment=segment, contact=contact, kind="join", reason="rule", changed_at=timezone.now(), detail=detail
    )

    without = segments_only.get("/api/v1/segments/vip/history/").json()["results"]
    with_contacts = segments_and_contacts.get("/api/v1/segments/vip/history/").json()["results"]

    assert without[0]["contact"] == contact.pk
    assert without[0]["detail"] is None
    assert with_contacts[0]["detail"] == detail


def test_explaining_a_contacts_segments_needs_contacts_read(
    segments_only, segments_and_contacts, segment_with_a_member
):
    _segment, contact = segment_with_a_member
    url = f"/api/v1/contacts/{contact.pk}/segments/"

    listed = segments_only.get(url)
    refused = segments_only.get(url, {"explain": "1"})
    explained = segments_and_contacts.get(url, {"explain": "1"})

    assert [row["slug"] for row in listed.json()] == ["vip"]
    _refusal(refused)
    assert explained.status_code == 200
    assert explained.json()[0]["explanation"] is not None


def test_saving_a_segment_whose_rule_reads_contact_data_needs_contacts_read(api_client):
    writer = api_client("segments:read", "segments:write")
    full = api_client("segments:read", "segments:write", "contacts:read")
    body = {"name": "Phones", "slug": "phones", "rule": PHONE_PREFIX}

    refused = writer.post("/api/v1/segments/", body, format="json")
    created = full.post("/api/v1/segments/", body, format="json")

    _refusal(refused)
    assert created.status_code == 201, created.json()
