"""Operations compare segments over a quarter, open one segment's analytics and the overlap map."""

import random
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import Activity, Contact, Deal
from segments.analytics import updates
from segments.models import Membership, MembershipChange, RuleVersion
from tests.analytics_support import build_world
from tests.factories import SegmentFactory

pytestmark = pytest.mark.django_db(transaction=True)

# name, members, how often they engage (activities per member), share who buy
SEGMENTS = [
    ("Enterprise buyers", 160, 14, 0.25),
    ("Newsletter readers", 220, 9, 0.04),
    ("Trial users", 120, 6, 0.10),
    ("Dormant accounts", 140, 1, 0.01),
]
KINDS = ["email_open", "email_open", "email_click", "site_visit", "page_view", "content_download", "webinar_attend"]


def build_data() -> list:
    world = build_world()
    rng = random.Random(22)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    contacts = Contact.objects.bulk_create(
        Contact(email=f"analytics{n}@example.com", created_at=datetime(2025, 12, 1, tzinfo=UTC)) for n in range(400)
    )
    segments = []
    for name, size, intensity, buyers in SEGMENTS:
        segment = SegmentFactory(name=name, kind="static", rule=None)
        segments.append(segment)
        members = rng.sample(contacts, size)
        changes, memberships, activities, deals = [], [], [], []
        for contact in members:
            joined = start + timedelta(days=rng.randrange(0, 250), hours=rng.randrange(24))
            changes.append(
                MembershipChange(segment=segment, contact=contact, kind="join", reason="rule", changed_at=joined)
            )
            if rng.random() < 0.15:
                left = joined + timedelta(days=rng.randrange(10, 90))
                changes.append(
                    MembershipChange(segment=segment, contact=contact, kind="leave", reason="rule", changed_at=left)
                )
            else:
                memberships.append(Membership(segment=segment, contact=contact, joined_at=joined))
            for _ in range(rng.randrange(0, intensity + 1)):
                when = joined + timedelta(days=rng.randrange(0, 200), hours=rng.randrange(24))
                activities.append(
                    Activity(
                        contact=contact,
                        kind=rng.choice(KINDS),
                        occurred_at=when,
                        campaign=rng.choice(["", "q3-webinar", "autumn-offer"]),
                    )
                )
            if rng.random() < buyers:
                when = joined + timedelta(days=rng.randrange(0, 150))
                activities.append(
                    Activity(
                        contact=contact, kind="purchase", occurred_at=when, value=Decimal(rng.randrange(100, 5000))
                    )
                )
                deals.append(
                    Deal(
                        name="won",
                        contact=contact,
                        amount=Decimal(rng.randrange(1000, 20000)),
                        stage="won",
                        created_at=when - timedelta(days=20),
                        closed_at=when,
                    )
                )
        MembershipChange.objects.bulk_create(changes)
        Membership.objects.bulk_create(memberships)
        Activity.objects.bulk_create([a for a in activities if a.occurred_at < timezone.now()])
        Deal.objects.bulk_create([d for d in deals if d.closed_at < timezone.now()])
        RuleVersion.objects.create(
            segment=segment, new_rule={"all": []}, changed_at=timezone.now() - timedelta(days=rng.randrange(5, 80))
        )
    segments[1].parent = segments[0]
    segments[1].save()
    updates.backfill(date(2026, 1, 1))
    return [world.segment, *segments]


def test_operations_compare_segments_and_open_one(page, log_in_as, ops_user, screenshot):
    segments = build_data()
    log_in_as(ops_user)

    page.goto("/segments/analytics/?period=2026Q3")
    expect(page.get_by_role("heading", name="Segment comparison")).to_be_visible()
    table = page.locator("#comparison")
    expect(table.locator("tbody tr")).to_have_count(1 + len(segments))
    expect(table.locator('tr[data-segment="analysed"]')).to_contain_text("80.0%")
    expect(page.locator("#channel-matrix")).to_contain_text("Email")
    screenshot("analytics-comparison")

    page.get_by_role("link", name="Engagement").click()  # sort by engagement, highest first
    expect(page).to_have_url(re.compile(r"sort=-engagement"))
    first = table.locator("tbody tr").nth(1)
    expect(first).to_contain_text("Enterprise buyers")

    page.locator("#id_period").fill("2026-09-30..2026-07-01")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_contain_text("period: the period ends (2026-07-01) before it starts")

    page.goto("/segments/analytics/?period=2026Q3")
    page.get_by_role("link", name="Newsletter readers").click()
    expect(page.get_by_role("heading", name="Newsletter readers · analytics")).to_be_visible()
    expect(page.locator("#parent-row")).to_contain_text("Enterprise buyers")
    expect(page.locator("#over-time svg")).to_have_count(3)
    expect(page.locator("#campaigns")).to_contain_text("q3-webinar")
    screenshot("analytics-segment")

    page.goto("/segments/analytics/overlap/")
    expect(page.get_by_text("Jaccard index").first).to_be_visible()
    screenshot("analytics-overlap")
