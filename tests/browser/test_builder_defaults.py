"""The builder's defaults never change the count silently: a new condition, a "member of a segment"
and an "is one of" start empty and ask; a failed save marks only the offending input; a good save
says the build is queued and then shows its result."""

import pytest
from playwright.sync_api import expect

from segments.models import Segment
from tests.factories import ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def node(page, path: str):
    return page.locator(f'[data-rb-node="{path}"]')


def test_new_conditions_start_empty_and_ask(page, ops_user, log_in_as, screenshot):
    SegmentFactory(name="Customers", slug="customers")
    ContactFactory.create_batch(3, lifecycle_stage="lead")
    page.set_viewport_size({"width": 1400, "height": 1000})
    log_in_as(ops_user)
    page.goto("/admin/segments/segment/add/")
    count = page.locator("[data-rb-count]")

    page.get_by_role("button", name="Add condition to the whole rule").click()
    expect(node(page, "all[0]").get_by_label("Field").locator("option:checked")).to_have_text("Choose a field…")
    expect(node(page, "all[0]").locator(".rb-error")).to_have_text("choose a field, an activity or a segment.")
    expect(count).to_contain_text("Fix the error")

    node(page, "all[0]").get_by_label("Field").select_option("lifecycle_stage")
    expect(node(page, "all[0]").get_by_label("Value").locator("option:checked")).to_have_text("Choose a value…")
    expect(node(page, "all[0]").locator(".rb-error")).to_have_text("choose a value.")
    node(page, "all[0]").get_by_label("Operator").select_option("in")
    values = node(page, "all[0]").get_by_label("Values (choose one or more)")
    expect(values.locator("option:checked")).to_have_count(0)
    expect(node(page, "all[0]").locator(".rb-error")).to_have_text("choose at least one value.")
    screenshot("builder-defaults-is-one-of", page.locator("[data-rule-builder]"))
    values.select_option(["lead"])
    expect(count).to_contain_text("3 contacts match")

    page.get_by_role("button", name="Add condition to the whole rule").click()
    node(page, "all[1]").get_by_label("Field").select_option("__segment__")
    expect(node(page, "all[1]").get_by_label("Segment").locator("option:checked")).to_have_text("Choose a segment…")
    expect(node(page, "all[1]").locator(".rb-error")).to_have_text("choose a segment.")
    expect(count).to_contain_text("Fix the error")
    screenshot("builder-defaults-segment", page.locator("[data-rule-builder]"))


def test_a_failed_save_marks_only_the_offending_input_and_a_good_one_builds(
    page, ops_user, log_in_as, screenshot, run_queued_tasks
):
    ContactFactory.create_batch(2, lead_score=80)
    ContactFactory(lead_score=10)
    page.set_viewport_size({"width": 1400, "height": 1000})
    log_in_as(ops_user)
    page.goto("/admin/segments/segment/add/")
    page.locator("#id_name").fill("Warm leads")
    page.locator("#id_slug").fill("warm-leads")
    page.get_by_role("button", name="Add condition to the whole rule").click()
    node(page, "all[0]").get_by_label("Field").select_option("lead_score")
    node(page, "all[0]").get_by_label("Operator").select_option("gte")
    page.get_by_role("button", name="Add condition to the whole rule").click()
    node(page, "all[1]").get_by_label("Field").select_option("city")
    node(page, "all[1]").get_by_label("Value").fill("Berlin")
    page.locator("input[name=_save]").click()

    # the form comes back; the builder marks the empty number and nothing else
    expect(page.locator(".errornote")).to_be_visible()
    expect(node(page, "all[0]").locator(".rb-error")).to_have_text("enter a number.")
    builder = page.locator("[data-rule-builder]")
    expect(builder.locator("[data-rb-tree] [aria-invalid=true]")).to_have_count(1)
    value = node(page, "all[0]").get_by_label("Value")
    expect(value).to_have_attribute("aria-invalid", "true")
    red = "rgb(186, 33, 33)"  # the admin's error colour
    assert value.evaluate("e => getComputedStyle(e).borderTopColor") == red
    for other in ("Field", "Operator"):
        assert node(page, "all[0]").get_by_label(other).evaluate("e => getComputedStyle(e).borderTopColor") != red
    assert builder.get_by_label("Contact email or id").evaluate("e => getComputedStyle(e).borderTopColor") != red
    screenshot("builder-failed-save")
    assert not Segment.objects.filter(slug="warm-leads").exists()

    node(page, "all[0]").get_by_label("Value").fill("50")
    node(page, "all[1]").get_by_role("button", name="Remove all[1]").click()
    expect(page.locator("[data-rb-count]")).to_contain_text("2 contacts match")
    page.locator("input[name=_save]").click()
    expect(page.locator("#refresh-progress")).to_contain_text("Saved. The build is queued")
    screenshot("builder-saved-queued")
    assert run_queued_tasks() >= 1
    page.wait_for_url("**?built=1")
    expect(page.locator("#refresh-progress")).to_contain_text("Saved and built")
    expect(page.locator('[data-refresh-field="size"]')).to_have_text("2")
    screenshot("builder-saved-built")
