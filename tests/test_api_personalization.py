"""personalization/ over the API."""

from segments.models import Membership
from tests.factories import CampaignFactory, CampaignVariantFactory, ContactFactory, SegmentFactory

URL = "/api/v1/personalization/"


def test_personalization_by_email_and_by_id(api_client):
    ada = ContactFactory(email="ada@example.com", interests=["kubernetes"])
    enterprise = SegmentFactory(slug="enterprise", name="Enterprise")
    Membership.objects.create(segment=enterprise, contact=ada)
    spring = CampaignFactory(slug="spring", name="Spring")
    CampaignVariantFactory(campaign=spring, segment=enterprise, priority=1, subject="For enterprises")
    client = api_client("personalization:read")

    by_email = client.get(URL, {"email": "ADA@example.com"})
    by_id = client.get(URL, {"contact": ada.pk})

    assert by_email.status_code == 200, by_email.json()
    assert by_email.json() == by_id.json()
    body = by_email.json()
    assert [s["slug"] for s in body["segments"]] == ["enterprise"]
    assert body["interests"] == ["kubernetes"]
    assert body["campaigns"][0]["subject"] == "For enterprises"
    assert body["campaigns"][0]["variant"]["segment"] == "enterprise"


def test_personalization_queries_do_not_grow_with_segments(api_client, django_assert_max_num_queries):
    ada = ContactFactory()
    client = api_client("personalization:read")
    client.get(URL, {"contact": ada.pk})
    for _ in range(5):
        Membership.objects.create(segment=SegmentFactory(), contact=ada)

    with django_assert_max_num_queries(6):  # key + personalize()'s own few queries
        assert client.get(URL, {"contact": ada.pk}).status_code == 200


def test_personalization_unknown_contact_is_404(api_client):
    response = api_client("personalization:read").get(URL, {"email": "nobody@example.com"})

    assert response.status_code == 404
    assert "nobody@example.com" in response.json()["error"]["message"]


def test_personalization_needs_exactly_one_lookup(api_client):
    client = api_client("personalization:read")

    assert client.get(URL).status_code == 400
    assert client.get(URL, {"email": "a@b.c", "contact": 1}).status_code == 400
    bad = client.get(URL, {"contact": "abc"})
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "contact")
    unknown = client.get(URL, {"mail": "a@b.c"})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "unknown_parameter")


def test_personalization_needs_its_scope(api_client):
    response = api_client("contacts:read").get(URL, {"contact": 1})

    assert response.status_code == 403
    assert "'personalization:read'" in response.json()["error"]["message"]
