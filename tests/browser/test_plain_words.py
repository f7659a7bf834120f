"""Operations read a rule and its history in words; the builder's choices show their labels; a Sales rep
reads why a contact is in a segment with field labels and the contact's values."""

import pytest
from playwright.sync_api import expect

from segments.editing import save_segment
from segments.models import Segment
from segments.refresh import refresh_segment
from tests.factories import CompanyFactory, ContactFactory

pytestmark = pytest.mark.django_db(transaction=True)

WIDE = {"width": 1400, "height": 1000}


def make_segment(ops_user) -> Segment:
    save_segment(
        Segment(
            name="Active customers",
            slug="active-customers",
            rule={"field": "lifecycle_stage", "op": "eq", "value": "customer"},
        )
    )
    segment = save_segment(
        Segment(
            name="Enterprise prospects",
            slug="enterprise-prospects",
            rule={"all": [{"field": "company.employee_count", "op": "gte", "value": 1000}]},
        ),
        user=ops_user,
    )
    segment.rule = {
        "all": [
            {"field": "company.employee_count", "op": "gte", "value": 5000},
            {"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]},
            {"not": {"in_segment": "active-customers"}},
        ]
    }
    return save_segment(segment, user=ops_user)


def test_operations_read_the_rule_and_its_history_in_words(page, ops_user, log_in_as, screenshot):
    segment = make_segment(ops_user)
    page.set_viewport_size(WIDE)
    log_in_as(ops_user)
    page.goto(f"/segments/{segment.pk}/")
    words = page.locator("#rule-words li")
    expect(words).to_have_text(
        [
            "All of these hold:",
            "Company employee count is at least 5,000",
            "Lifecycle stage is one of Marketing qualified lead or Sales qualified lead",
            "Not: Member of Active customers",
        ]
    )
    latest = page.locator("section[aria-labelledby=versions-heading] details").first
    changed = latest.locator("tr.changed")
    expect(changed).to_have_count(1)
    expect(changed.locator("td").nth(0)).to_have_text("Company employee count is at least 1,000")
    expect(changed.locator("td").nth(1)).to_have_text("Company employee count is at least 5,000")
    expect(latest.locator("tr.added")).to_have_count(2)
    expect(page.locator("section[aria-labelledby=rule-heading] pre")).not_to_be_visible()  # JSON only on request
    page.locator("#rule-heading").scroll_into_view_if_needed()
    screenshot("plain-words-segment-rule", page.locator(".stack").last)


def test_the_builder_shows_choice_labels_and_spelled_out_operators(page, ops_user, log_in_as, screenshot):
    segment = make_segment(ops_user)
    page.set_viewport_size(WIDE)
    log_in_as(ops_user)
    page.goto(f"/admin/segments/segment/{segment.pk}/change/")
    stage = page.locator('[data-rb-node="all[1]"]')
    values = stage.get_by_label("Values (choose one or more)")
    expect(values.locator("option:checked")).to_have_text(["Marketing qualified lead", "Sales qualified lead"])
    expect(page.locator('[data-rb-node="all[0]"]').get_by_label("Operator").locator("option:checked")).to_have_text(
        "is at least …"
    )
    screenshot("plain-words-builder", page.locator("[data-rule-builder]"))


def test_a_sales_rep_reads_why_in_words(page, ops_user, sales_user, log_in_as, screenshot):
    segment = make_segment(ops_user)
    contact = ContactFactory(
        first_name="Grace", lifecycle_stage="mql", company=CompanyFactory(name="Globex", employee_count=12000)
    )
    refresh_segment(Segment.objects.get(slug="active-customers").pk)
    refresh_segment(segment.pk)
    page.set_viewport_size(WIDE)
    log_in_as(sales_user)
    page.goto(f"/contacts/{contact.pk}/")
    why = page.get_by_text("Company employee count is at least 5,000: 12,000")
    expect(why).to_be_visible()
    expect(
        page.get_by_text(
            "Lifecycle stage is one of Marketing qualified lead or Sales qualified lead: Marketing qualified lead"
        )
    ).to_be_visible()
    expect(page.get_by_text("Not: Member of active-customers: no")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("company.employee_count")
    screenshot("plain-words-contact-why")
