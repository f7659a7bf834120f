"""Operations build a nested rule with the builder, watch the live count, see an error at the
condition it belongs to, explain a contact, save, refresh from the segment page and see the chart."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import ActivityKind
from segments.models import Segment
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory

pytestmark = pytest.mark.django_db(transaction=True)

EXPECTED_RULE = {
    "all": [
        {"field": "company.employee_count", "op": "gte", "value": 1000},
        {
            "any": [
                {"field": "lifecycle_stage", "op": "eq", "value": "mql"},
                {"event": {"kind": "email_click"}, "op": "performed", "within_days": 30},
            ]
        },
    ]
}


def build_crm():
    big = CompanyFactory(name="Globex", employee_count=5000)
    small = CompanyFactory(name="Tiny Co", employee_count=20)
    mqls = [ContactFactory(company=big, lifecycle_stage="mql", first_name="Big", last_name=f"Mql{i}") for i in range(3)]
    clicker, quiet = (ContactFactory(company=big, lifecycle_stage="customer") for _ in range(2))
    ActivityFactory(contact=clicker, kind=ActivityKind.EMAIL_CLICK, occurred_at=timezone.now() - timedelta(days=5))
    ActivityFactory(contact=quiet, kind=ActivityKind.EMAIL_CLICK, occurred_at=timezone.now() - timedelta(days=90))
    ContactFactory.create_batch(4, company=small, lifecycle_stage="mql")
    return mqls[0]


def node(page, path: str):
    return page.locator(f'[data-rb-node="{path}"]')


def test_operations_build_a_nested_rule_save_and_refresh(
    page, live_server, ops_user, log_in_as, screenshot, run_queued_tasks
):
    explained = build_crm()
    log_in_as(ops_user)
    page.goto("/admin/segments/segment/add/")
    page.locator("#id_name").press_sequentially("Enterprise prospects")
    expect(page.locator("#id_slug")).to_have_value("enterprise-prospects")
    builder = page.locator("[data-rule-builder]")
    count = builder.locator("[data-rb-count]")
    expect(count).to_contain_text("Fix the error")  # an empty rule

    # all[0]: company size of at least 1,000
    page.get_by_role("button", name="Add condition to the whole rule").click()
    node(page, "all[0]").get_by_label("Field").select_option("company.employee_count")
    node(page, "all[0]").get_by_label("Operator").select_option("gte")
    node(page, "all[0]").get_by_label("Value").fill("1000")
    expect(count).to_contain_text("5 contacts match")

    # all[1]: any of MQL or an email click in 30 days; the group is added from the keyboard
    page.get_by_role("button", name="Add group to the whole rule").focus()
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Add condition to all[1]").click()
    node(page, "all[1].any[0]").get_by_label("Field").select_option("lifecycle_stage")
    node(page, "all[1].any[0]").get_by_label("Value").select_option("mql")
    page.get_by_role("button", name="Add event condition to all[1]").click()
    expect(node(page, "all[1].any[1]").get_by_label("Activity kind")).to_have_value("email_click")
    expect(count).to_contain_text("4 contacts match")
    expect(builder.locator("[data-rb-samples] li")).to_have_count(4)

    # A broken value: the error shows at all[0], nowhere else, and the count waits for a fix
    node(page, "all[0]").get_by_label("Value").fill("")
    error = node(page, "all[0]").locator(".rb-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-rb-error-path", "all[0].value")
    expect(node(page, "all[1]").locator(".rb-error")).to_have_count(0)
    expect(node(page, "all[0]").get_by_label("Value")).to_have_attribute("aria-invalid", "true")
    expect(count).to_contain_text("Fix the error")
    screenshot("rule-builder-error", builder)
    node(page, "all[0]").get_by_label("Value").fill("1000")
    expect(count).to_contain_text("4 contacts match")
    expect(node(page, "all[0]").locator(".rb-error")).to_have_count(0)

    # The JSON stays in sync
    page.get_by_text("Rule as JSON").click()
    assert json.loads(page.locator("#id_rule").input_value()) == EXPECTED_RULE

    # Explain one contact
    builder.get_by_label("Contact email or id").fill(explained.email)
    builder.get_by_role("button", name="Explain").click()
    expect(builder.locator(".rb-verdict-line")).to_contain_text("matches the rule")
    expect(node(page, "all[1].any[1]").locator("[data-rb-verdict]")).to_have_text("false")
    expect(node(page, "all[0]").locator("[data-rb-verdict]")).to_have_text("true")
    screenshot("rule-builder", builder)
    screenshot("segment-form")

    page.locator("input[name=_save]").click()
    expect(page.locator("#refresh-progress")).to_contain_text("Saved. The build is queued")
    segment = Segment.objects.get(slug="enterprise-prospects")
    assert segment.rule == EXPECTED_RULE
    assert run_queued_tasks() >= 1
    page.wait_for_url("**?built=1")
    expect(page.locator("#refresh-progress")).to_contain_text("Saved and built")

    # Refresh from the segment page; a worker picks it up while the page polls
    page.get_by_role("button", name="Refresh now").click()
    expect(page.locator("#refresh-progress")).to_contain_text("Waiting for a worker")
    # The page reloads itself a moment after the refresh finishes; wait for that
    # reload, or a later click can lose its navigation to it.
    with page.expect_navigation(url=f"**/segments/{segment.pk}/"):
        assert run_queued_tasks() >= 1
        expect(page.locator("#refresh-progress")).to_contain_text("Refreshed in")
    expect(page.locator('[data-refresh-field="size"]')).to_have_text("4")
    expect(page.locator("svg.chart rect.bar-join")).to_have_count(1)
    expect(page.locator("#members tbody tr")).to_have_count(4)
    screenshot("segment-page")

    page.get_by_role("link", name="Segments", exact=True).click()
    expect(page.locator("#segments [data-segment=enterprise-prospects]")).to_contain_text("+4")
    screenshot("segments-overview")
