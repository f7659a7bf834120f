"""The contact page a Sales rep reads: facts, deals, tickets, segments, flags, activity."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.models import ActivityKind, ContactMetrics
from segments.models import Membership
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory, DealFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def page(client, contact, **params):
    return client.get(reverse("contacts-detail", args=[contact.pk]), params)


def test_it_shows_contact_company_and_stage(client, sales_user):
    company = CompanyFactory(name="Acme Robotics", industry="manufacturing", employee_count=1200, country="DE")
    contact = ContactFactory(
        first_name="Ada", last_name="Lovelace", job_title="CTO", company=company, owner=sales_user, lead_score=71
    )
    contact.lifecycle_stage = "mql"
    contact.save()
    client.force_login(sales_user)
    response = page(client, contact)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<h1>Ada Lovelace</h1>" in html
    assert "CTO" in html
    assert "Acme Robotics" in html
    assert "manufacturing" in html
    assert "1,200" in html
    assert "Marketing qualified lead" in html
    since = timezone.localtime(contact.lifecycle_changed_at)
    assert f'since <time datetime="{since.isoformat()}">{since:%-d %b %Y}</time>' in html
    assert ">71<" in html
    assert "Lead</strong>" in html  # stage history: created as lead, then MQL


def test_unknown_contact_is_a_404(client, sales_user):
    client.force_login(sales_user)
    assert client.get(reverse("contacts-detail", args=[987654])).status_code == 404


def test_it_lists_open_deals_only(client, sales_user):
    contact = ContactFactory()
    DealFactory(contact=contact, name="Cloud expansion", amount=50000)
    DealFactory(contact=contact, name="Old renewal", stage="won", closed_at=timezone.now())
    client.force_login(sales_user)
    response = page(client, contact)
    assert [deal.name for deal in response.context["open_deals"]] == ["Cloud expansion"]
    assert "50,000" in response.content.decode()


def test_a_ticket_is_open_until_a_later_close(client, sales_user):
    contact = ContactFactory()
    now = timezone.now()
    ActivityFactory(contact=contact, kind=ActivityKind.SUPPORT_TICKET_OPENED, occurred_at=now - timedelta(days=20))
    ActivityFactory(contact=contact, kind=ActivityKind.SUPPORT_TICKET_CLOSED, occurred_at=now - timedelta(days=15))
    still_open = ActivityFactory(
        contact=contact, kind=ActivityKind.SUPPORT_TICKET_OPENED, occurred_at=now - timedelta(days=2), topic="billing"
    )
    other = ContactFactory()
    ActivityFactory(contact=other, kind=ActivityKind.SUPPORT_TICKET_OPENED, occurred_at=now - timedelta(days=1))
    client.force_login(sales_user)
    response = page(client, contact)
    assert response.context["open_tickets"] == [still_open]
    assert "billing" in response.content.decode()


def test_it_shows_memberships_with_joined_date(client, sales_user):
    contact = ContactFactory()
    cloud = SegmentFactory(name="Cloud buyers", slug="cloud-buyers")
    joined = timezone.now() - timedelta(days=3)
    Membership.objects.create(segment=cloud, contact=contact, joined_at=joined)
    SegmentFactory(name="Not mine")
    client.force_login(sales_user)
    response = page(client, contact)
    html = response.content.decode()
    assert [m.segment.name for m in response.context["memberships"]] == ["Cloud buyers"]
    assert 'data-segment="cloud-buyers"' in html
    assert joined.strftime("%-d %b %Y") in html
    assert "Not mine" not in html


def test_it_flags_suppressions_plainly(client, sales_user):
    contact = ContactFactory(do_not_contact=True)
    upsell_block = SegmentFactory(
        name="Do not include in upsell", kind="suppression", description="Open support ticket."
    )
    Membership.objects.create(segment=upsell_block, contact=contact)
    client.force_login(sales_user)
    html = page(client, contact).content.decode()
    assert "<strong>Do not include in upsell:</strong> <span>Open support ticket</span>" in html
    assert "Do not contact" in html


def test_activity_timeline_is_paged_newest_first(client, sales_user):
    contact = ContactFactory()
    now = timezone.now()
    for day in range(25):
        ActivityFactory(
            contact=contact, kind=ActivityKind.PAGE_VIEW, occurred_at=now - timedelta(days=day), topic=f"t{day}"
        )
    client.force_login(sales_user)
    first = page(client, contact).context["activities"]
    assert [a.topic for a in first.rows][:3] == ["t0", "t1", "t2"]
    assert len(first.rows) == 20
    assert first.has_next
    second = page(client, contact, activity_page=2).context["activities"]
    assert [a.topic for a in second.rows] == ["t20", "t21", "t22", "t23", "t24"]
    assert not second.has_next


def test_it_says_why_the_contact_is_in_each_segment(client, sales_user):
    contact = ContactFactory(lead_score=80, lifecycle_stage="mql")
    ActivityFactory(contact=contact, kind=ActivityKind.PRICING_VIEW, occurred_at=timezone.now() - timedelta(days=2))
    hot = SegmentFactory(
        name="Hot leads",
        rule={
            "all": [
                {"field": "lead_score", "op": "gte", "value": 50},
                {"event": {"kind": "pricing_view"}, "op": "performed", "within_days": 7},
            ]
        },
    )
    stale = SegmentFactory(name="Customers", rule={"field": "lifecycle_stage", "op": "eq", "value": "customer"})
    listed = SegmentFactory(name="Trade show list", kind="static", rule=None)
    for segment in (hot, stale, listed):
        Membership.objects.create(segment=segment, contact=contact)
    client.force_login(sales_user)
    response = page(client, contact)
    why = {m.segment.name: m.why for m in response.context["memberships"]}
    assert why["Hot leads"] == [
        "Lead score is at least 50: 80",
        "Pricing page view at least once in the last 7 days: 1 found",
    ]
    assert why["Customers"] == ["No longer matches (the next refresh will remove the contact)"]
    assert why["Trade show list"] == []
    html = response.content.decode()
    assert "Lead score is at least 50: 80" in html
    assert "Added by hand" in html


def test_it_shows_engagement_rfv_velocity_and_interests(client, sales_user):
    contact = ContactFactory()
    ContactMetrics.objects.create(
        contact=contact,
        as_of=timezone.now(),
        engagement_score=42.5,
        engagement_percentile=91.0,
        engagement_level="highly_engaged",
        email_engagement_level="moderately_engaged",
        web_activity_level="active",
        top_topics=[{"topic": "cloud-migration", "share": 61.2}, {"topic": "security", "share": 20.0}],
        product_interest=[{"product": "Platform", "intent": 3.2, "strong": True}],
        r_score=5,
        f_score=4,
        v_score=4,
        rfv_cell="champions",
        recent_activity_count=12,
        previous_activity_count=4,
        velocity_ratio=3.0,
        is_accelerating=True,
    )
    client.force_login(sales_user)
    html = page(client, contact).content.decode()
    assert "42.5" in html
    assert "Highly engaged" in html
    assert "top 9%" in html
    assert "Champions" in html
    assert "R5 F4 V4" in html
    assert "×3.0" in html
    assert "accelerating" in html
    assert "cloud-migration · 61%" in html
    assert "Platform · strong intent" in html


def test_a_contact_without_metrics_still_renders(client, sales_user):
    contact = ContactFactory()
    client.force_login(sales_user)
    response = page(client, contact)
    assert response.status_code == 200
    assert 'data-metric="engagement"' not in response.content.decode()


def test_query_count_does_not_grow_with_the_contacts_data(client, sales_user, django_assert_num_queries):
    contact = ContactFactory(company=CompanyFactory(), owner=sales_user)
    base = SegmentFactory(slug="base", rule={"field": "lead_score", "op": "gte", "value": 0})
    Membership.objects.create(segment=base, contact=contact)
    client.force_login(sales_user)
    rules = [
        {"field": "company.employee_count", "op": "gte", "value": 10},
        {"event": {"kind": "page_view"}, "op": "count_gte", "value": 1, "within_days": 30},
        {"in_segment": "base"},
        {"not": {"field": "lifecycle_stage", "op": "eq", "value": "customer"}},
    ]

    def add_data(n: int) -> None:
        for i in range(n):
            segment = SegmentFactory(rule=rules[i % len(rules)])
            Membership.objects.create(segment=segment, contact=contact)
            DealFactory(contact=contact)
            ActivityFactory(contact=contact, kind=ActivityKind.SUPPORT_TICKET_OPENED)
            ActivityFactory(contact=contact, topic=f"topic {i}")
        contact.lifecycle_stage = ["mql", "sql", "customer"][n % 3]
        contact.save()

    add_data(4)
    # session, user, 2 permission, contact+company+owner+metrics, history, deals, tickets, memberships,
    # activity page, propensity scores; the explainer: property definitions, propensity models, the
    # contact, its activities, its memberships
    expected = 16
    with django_assert_num_queries(expected):
        page(client, contact)
    add_data(8)
    with django_assert_num_queries(expected):
        response = page(client, contact)
    assert len(response.context["memberships"]) == 13
    assert all(m.why for m in response.context["memberships"])
