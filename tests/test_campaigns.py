import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from activation.campaigns import active_campaigns, choose, explain_choice
from activation.models import CampaignVariant
from segments.models import Membership, MembershipChange
from tests.factories import CampaignFactory, CampaignVariantFactory, ContactFactory, SegmentFactory


def member(contact, *segments):
    for segment in segments:
        Membership.objects.create(segment=segment, contact=contact)
        MembershipChange.objects.create(
            segment=segment, contact=contact, kind="join", reason="rule", detail={"matched": segment.slug}
        )


def content_for(campaign, contact):
    campaign = active_campaigns().get(pk=campaign.pk)
    return choose(campaign, set(Membership.objects.filter(contact=contact).values_list("segment_id", flat=True)))


@pytest.mark.django_db
def test_variant_of_the_best_placed_segment_wins():
    campaign = CampaignFactory()
    enterprise, mql, emea = SegmentFactory(slug="enterprise"), SegmentFactory(slug="mql"), SegmentFactory(slug="emea")
    CampaignVariantFactory(campaign=campaign, segment=emea, priority=30)
    CampaignVariantFactory(campaign=campaign, segment=enterprise, priority=10)
    CampaignVariantFactory(campaign=campaign, segment=mql, priority=20)
    ada = ContactFactory()
    member(ada, emea, mql)

    content = content_for(campaign, ada)

    assert (content.variant.segment, content.variant.priority) == (mql, 20)
    assert (content.subject, content.cta_text, content.cta_url) == (
        "Subject for mql",
        "CTA for mql",
        "https://example.com/mql",
    )


@pytest.mark.django_db
def test_contact_in_no_variant_segment_gets_the_default():
    campaign = CampaignFactory()
    CampaignVariantFactory(campaign=campaign)
    outsider = ContactFactory()

    content = content_for(campaign, outsider)

    assert content.variant is None
    assert content.as_dict() == {
        "campaign": campaign.slug,
        "name": campaign.name,
        "variant": None,
        "subject": "Our default subject",
        "preheader": "Default preheader",
        "content_blocks": [{"type": "text", "text": "Default body"}],
        "cta": {"text": "Learn more", "url": "https://example.com/default"},
        "experiment": None,
    }


@pytest.mark.django_db
def test_blank_variant_fields_fall_back_to_the_default():
    campaign = CampaignFactory()
    segment = SegmentFactory()
    CampaignVariantFactory(campaign=campaign, segment=segment, subject="Only the subject", cta_text="", cta_url="")
    ada = ContactFactory()
    member(ada, segment)

    content = content_for(campaign, ada)

    assert content.subject == "Only the subject"
    assert (content.preheader, content.cta_text) == ("Default preheader", "Learn more")
    assert content.content_blocks == [{"type": "text", "text": "Default body"}]


@pytest.mark.django_db
def test_variants_of_archived_segments_are_ignored():
    campaign = CampaignFactory()
    archived = SegmentFactory(status="archived")
    CampaignVariantFactory(campaign=campaign, segment=archived, priority=1)
    ada = ContactFactory()
    member(ada, archived)

    assert content_for(campaign, ada).variant is None


@pytest.mark.django_db
def test_content_blocks_errors_name_the_block():
    variant = CampaignVariantFactory.build(
        campaign=CampaignFactory(),
        segment=SegmentFactory(),
        content_blocks=[{"type": "heading", "text": "Hi"}, {"type": "image"}],
    )

    with pytest.raises(ValidationError, match=r"content_blocks\[1\]: a image block needs a non-empty 'url'"):
        variant.full_clean()
    variant.content_blocks = [{"type": "video", "url": "https://x.example"}]
    with pytest.raises(ValidationError, match=r"content_blocks\[0\]: each block is an object whose type is one of"):
        variant.full_clean()


@pytest.mark.django_db
def test_suppression_segments_cannot_carry_a_variant():
    variant = CampaignVariant(
        campaign=CampaignFactory(), segment=SegmentFactory(kind="suppression", name="Do not mail"), priority=1
    )

    with pytest.raises(ValidationError, match="'Do not mail' is a suppression segment"):
        variant.full_clean()


@pytest.mark.django_db
def test_explanation_lists_every_variant_with_membership_and_reason():
    campaign = CampaignFactory()
    first, second = SegmentFactory(slug="first"), SegmentFactory(slug="second")
    CampaignVariantFactory(campaign=campaign, segment=first, priority=1)
    CampaignVariantFactory(campaign=campaign, segment=second, priority=2)
    ada = ContactFactory()
    member(ada, second)

    content, checks = explain_choice(campaign, ada)

    assert content.variant.segment == second
    assert [(c.variant.segment.slug, c.matches) for c in checks] == [("first", False), ("second", True)]
    assert checks[1].join_reason == "Rule matched / stopped matching"
    assert checks[1].join_detail == {"matched": "second"}


@pytest.mark.django_db
def test_explanation_carries_the_explainer_verdict_on_each_rule():
    campaign = CampaignFactory()
    mqls = SegmentFactory(rule={"field": "lifecycle_stage", "op": "eq", "value": "mql"})
    customers = SegmentFactory(rule={"field": "lifecycle_stage", "op": "eq", "value": "customer"})
    static = SegmentFactory(kind="static", rule=None)
    for priority, segment in enumerate((mqls, customers, static), start=1):
        CampaignVariantFactory(campaign=campaign, segment=segment, priority=priority)
    ada = ContactFactory(lifecycle_stage="mql")
    member(ada, mqls)

    _, checks = explain_choice(campaign, ada)

    assert checks[0].rule_now.startswith("Matches: ")
    assert checks[1].rule_now.startswith("Does not match: ")
    assert checks[2].rule_now == ""


@pytest.mark.django_db
def test_admin_preview_shows_the_variant_and_why(client, superuser):
    campaign = CampaignFactory()
    enterprise = SegmentFactory(name="Enterprise accounts")
    CampaignVariantFactory(campaign=campaign, segment=enterprise, priority=3, subject="Hello enterprise")
    ada = ContactFactory(email="ada@example.com")
    member(ada, enterprise)
    client.force_login(superuser)
    url = reverse("admin:activation_campaign_preview", args=[campaign.pk])

    page = client.get(url, {"contact": "ADA@example.com"})

    assert page.status_code == 200
    assert "Variant for segment <strong>Enterprise accounts</strong> (priority 3)" in page.text
    assert "Hello enterprise" in page.text
    assert "yes, since" in page.text
    # The stored membership says yes; the explainer shows the rule (lifecycle_stage = mql) no longer holds.
    assert "Does not match: " in page.text
    by_id = client.get(url, {"contact": str(ContactFactory().pk)})
    assert "The campaign default: the contact is in none of the variants' segments." in by_id.text


@pytest.mark.django_db
def test_admin_preview_of_unknown_contact_says_so(client, superuser):
    campaign = CampaignFactory()
    client.force_login(superuser)

    page = client.get(reverse("admin:activation_campaign_preview", args=[campaign.pk]), {"contact": "nobody@x.org"})

    assert page.status_code == 200
    assert "No contact has the id or email &#x27;nobody@x.org&#x27;." in page.text


@pytest.mark.django_db
def test_admin_campaign_pages_render_with_variant_inline(client, superuser):
    campaign = CampaignFactory()
    CampaignVariantFactory(campaign=campaign)
    client.force_login(superuser)

    changelist = client.get(reverse("admin:activation_campaign_changelist"))
    change = client.get(reverse("admin:activation_campaign_change", args=[campaign.pk]))

    assert changelist.status_code == 200
    assert "Preview for a contact" in changelist.text
    assert change.status_code == 200
    assert "variants-0-priority" in change.text
