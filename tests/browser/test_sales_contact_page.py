"""A Sales rep logs in, finds a contact, reads the contact page and is refused the admin."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import ActivityKind, ContactMetrics
from segments.models import Membership
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory, DealFactory, SegmentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def build_contact(owner):
    company = CompanyFactory(
        name="Northwind Logistics",
        domain="northwind.example",
        industry="logistics",
        employee_count=2400,
        annual_revenue=180_000_000,
        country="DE",
        city="Hamburg",
        technologies=["aws", "kubernetes", "salesforce"],
        is_target_account=True,
    )
    contact = ContactFactory(
        first_name="Mira",
        last_name="Okafor",
        email="mira.okafor@northwind.example",
        job_title="Head of Platform Engineering",
        job_function="engineering",
        seniority="director",
        company=company,
        owner=owner,
        lead_score=82,
        city="Hamburg",
        country="DE",
        phone="+4940123456",
    )
    contact.lifecycle_stage = "sql"
    contact.save()
    now = timezone.now()
    kinds = [ActivityKind.EMAIL_CLICK, ActivityKind.PRICING_VIEW, ActivityKind.CONTENT_DOWNLOAD, ActivityKind.PAGE_VIEW]
    for day in range(24):
        ActivityFactory(
            contact=contact,
            kind=kinds[day % 4],
            occurred_at=now - timedelta(days=day, hours=3),
            topic="cloud-migration" if day % 2 else "kubernetes",
            product="Platform" if day % 3 == 0 else "",
            campaign="q4-cloud" if day % 4 == 0 else "",
        )
    ActivityFactory(
        contact=contact, kind=ActivityKind.SUPPORT_TICKET_OPENED, occurred_at=now - timedelta(hours=5), topic="sso"
    )
    DealFactory(contact=contact, company=company, name="Platform expansion 2027", amount=120_000)
    ContactMetrics.objects.create(
        contact=contact,
        as_of=now,
        activity_count=25,
        engagement_score=37.8,
        engagement_percentile=94.2,
        engagement_level="highly_engaged",
        email_engagement_level="moderately_engaged",
        web_activity_level="active",
        top_topics=[{"topic": "cloud-migration", "share": 52.4}, {"topic": "kubernetes", "share": 47.6}],
        product_interest=[{"product": "Platform", "intent": 4.1, "strong": True}],
        r_score=5,
        f_score=5,
        v_score=3,
        rfv_cell="loyal",
        recent_activity_count=18,
        previous_activity_count=6,
        velocity_ratio=3.0,
        is_accelerating=True,
    )
    cloud = SegmentFactory(
        name="Cloud migration buyers",
        slug="cloud-migration-buyers",
        rule={"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]},
    )
    block = SegmentFactory(
        name="Do not include in upsell",
        slug="no-upsell-open-ticket",
        kind="suppression",
        description="Open support ticket",
        rule={"event": {"kind": "support_ticket_opened"}, "op": "performed", "within_days": 14},
    )
    Membership.objects.create(segment=cloud, contact=contact, joined_at=now - timedelta(days=12))
    Membership.objects.create(segment=block, contact=contact, joined_at=now - timedelta(hours=5))
    return contact


def test_sales_rep_reads_a_contact_page_and_is_refused_the_admin(page, live_server, sales_user, screenshot):
    contact = build_contact(sales_user)

    page.goto("/contacts/")
    expect(page).to_have_url(f"{live_server.url}/login/?next=/contacts/")
    page.get_by_label("Username").fill("rep")
    page.get_by_label("Password").fill("rep-password-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Contacts", level=1)).to_be_visible()
    expect(page.locator("[data-admin-link]")).to_have_count(0)

    page.get_by_label("Name, email or company").fill("okafor")
    page.get_by_role("button", name="Search").click()
    screenshot("contact-search")
    page.get_by_role("link", name="Mira Okafor").click()

    expect(page).to_have_url(f"{live_server.url}/contacts/{contact.pk}/")
    expect(page.get_by_role("heading", name="Mira Okafor")).to_be_visible()
    memberships = page.locator("#memberships")
    cloud_row = memberships.locator("[data-segment=cloud-migration-buyers]")
    expect(cloud_row).to_contain_text("Cloud migration buyers")
    expect(cloud_row.locator(".why")).to_contain_text(
        "Lifecycle stage is one of Marketing qualified lead or Sales qualified lead: Sales qualified lead"
    )
    expect(page.locator("[data-suppression]")).to_contain_text("Do not include in upsell: Open support ticket")
    expect(page.get_by_role("heading", name="Open support tickets")).to_be_visible()
    expect(page.get_by_text("Platform expansion 2027")).to_be_visible()
    expect(page.locator("[data-metric=engagement]")).to_contain_text("Highly engaged")
    expect(page.locator("[data-metric=rfv]")).to_contain_text("Loyal")
    expect(page.locator("[data-admin-link]")).to_have_count(0)
    screenshot("contact-page")

    page.get_by_role("link", name="Older →").click()
    expect(page.locator("ol.timeline").first.locator("li")).to_have_count(5)

    response = page.goto("/admin/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="You may not open this page")).to_be_visible()
    screenshot("sales-refused-admin")
