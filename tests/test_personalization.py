import re

import pytest
from django.utils import timezone

from activation.personalization import ContactNotFound, personalize
from contacts.models import ContactMetrics
from segments.models import Membership
from tests.factories import CampaignFactory, CampaignVariantFactory, ContactFactory, SegmentFactory


@pytest.fixture
def ada(db):
    return ContactFactory(email="ada@example.com", interests=["kubernetes", "finops"])


def test_it_returns_segments_interests_and_campaign_content(ada):
    enterprise = SegmentFactory(slug="enterprise", name="Enterprise", category="account")
    suppression = SegmentFactory(slug="legal-hold", kind="suppression")
    archived = SegmentFactory(slug="old", status="archived")
    for segment in (enterprise, suppression, archived):
        Membership.objects.create(segment=segment, contact=ada)
    spring = CampaignFactory(slug="spring", name="Spring launch")
    CampaignVariantFactory(campaign=spring, segment=enterprise, priority=1, subject="Enterprise spring")
    CampaignFactory(slug="webinar", name="Webinar")
    CampaignFactory(slug="paused", active=False)

    result = personalize(contact_id=ada.pk)

    assert result["contact"] == {"id": ada.pk, "email": "ada@example.com", "lifecycle_stage": "lead"}
    assert [(s["slug"], s["name"], s["category"]) for s in result["segments"]] == [
        ("enterprise", "Enterprise", "account")
    ]
    assert result["interests"] == ["kubernetes", "finops"]
    assert (result["top_topics"], result["products_of_interest"], result["engagement_level"]) == ([], [], "")
    by_slug = {c["campaign"]: c for c in result["campaigns"]}
    assert set(by_slug) == {"spring", "webinar"}
    assert by_slug["spring"]["variant"]["segment"] == "enterprise"
    assert by_slug["spring"]["subject"] == "Enterprise spring"
    assert by_slug["spring"]["cta"] == {"text": "CTA for enterprise", "url": "https://example.com/enterprise"}
    assert by_slug["webinar"]["variant"] is None
    assert by_slug["webinar"]["cta"] == {"text": "Learn more", "url": "https://example.com/default"}


def test_it_finds_the_contact_by_email_in_any_case(ada):
    assert personalize(email="  ADA@Example.com ")["contact"]["id"] == ada.pk


def test_query_count_does_not_grow_with_segments_or_campaigns(ada, django_assert_num_queries):
    first = SegmentFactory()
    Membership.objects.create(segment=first, contact=ada)
    CampaignVariantFactory(segment=first, priority=1)
    with django_assert_num_queries(4):
        personalize(contact_id=ada.pk)

    for _ in range(10):
        segment = SegmentFactory()
        Membership.objects.create(segment=segment, contact=ada)
        campaign = CampaignFactory()
        CampaignVariantFactory(campaign=campaign, segment=segment, priority=1)
        CampaignVariantFactory(campaign=campaign, priority=2)
    with django_assert_num_queries(4):
        result = personalize(email="ada@example.com")
    assert len(result["segments"]) == 11
    assert sum(c["variant"] is not None for c in result["campaigns"]) == 11


def test_unknown_contact_is_a_clear_error(db):
    with pytest.raises(ContactNotFound, match=re.escape("No contact with email 'who@example.com'.")):
        personalize(email="Who@example.com")
    with pytest.raises(ContactNotFound, match=re.escape("No contact with id 999999.")):
        personalize(contact_id=999999)


def test_exactly_one_of_id_or_email_is_required(db):
    with pytest.raises(ValueError, match="exactly one of contact_id or email"):
        personalize()
    with pytest.raises(ValueError, match="exactly one of contact_id or email"):
        personalize(contact_id=1, email="a@example.com")


def test_it_adds_top_topics_and_products_from_metrics(ada, django_assert_num_queries):
    ContactMetrics.objects.create(
        contact=ada,
        as_of=timezone.now(),
        engagement_level="highly_engaged",
        email_engagement_level="moderately_engaged",
        web_activity_level="active",
        top_topics=[{"topic": "cloud-migration", "share": 62.5}, {"topic": "security", "share": 37.5}],
        products=["backup", "vault"],
    )

    with django_assert_num_queries(3):
        result = personalize(contact_id=ada.pk)

    assert result["top_topics"] == [{"topic": "cloud-migration", "share": 62.5}, {"topic": "security", "share": 37.5}]
    assert result["products_of_interest"] == ["backup", "vault"]
    assert result["engagement_level"] == "highly_engaged"


def test_a_contact_in_no_segment_takes_three_queries_and_gets_defaults(ada, django_assert_num_queries):
    CampaignVariantFactory(priority=1)

    with django_assert_num_queries(3):
        result = personalize(contact_id=ada.pk)

    assert result["segments"] == []
    assert [c["variant"] for c in result["campaigns"]] == [None]


def test_the_best_placed_variant_wins_and_names_its_segment(ada):
    low, high = SegmentFactory(slug="low"), SegmentFactory(slug="high")
    Membership.objects.create(segment=low, contact=ada)
    Membership.objects.create(segment=high, contact=ada)
    campaign = CampaignFactory(slug="launch")
    CampaignVariantFactory(campaign=campaign, segment=low, priority=9)
    CampaignVariantFactory(campaign=campaign, segment=high, priority=2, subject="High wins")

    [content] = personalize(contact_id=ada.pk)["campaigns"]

    assert content["variant"] == {"id": content["variant"]["id"], "segment": "high", "priority": 2}
    assert content["subject"] == "High wins"
