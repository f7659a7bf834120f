"""Operations test two size bracketings, read which separates behaviour more, and create its segments."""

import pytest
from playwright.sync_api import expect

from segments.models import Segment
from tests.test_segment_boundaries import plant

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_boundary_test_is_run_read_and_turned_into_segments(page, log_in_as, ops_user, screenshot):
    plant(1500)
    log_in_as(ops_user)

    page.goto("/admin/segments/segment/boundaries/")
    page.select_option("#id_field", "company.employee_count")
    page.fill("#id_bracketings", "1, 50, 250\n1, 100, 500")
    page.click("#boundary-form button[type=submit]")

    expect(page.locator("#summary")).to_contain_text("Bracketing 2 (1–99 / 100–499 / 500+) separates converted more")
    expect(page.locator("#bracketing-2")).to_contain_text("500+")
    expect(page.locator("#suggested")).to_contain_text("held-out 30%")
    screenshot("boundary-report")
    page.locator("form:has(button[name=create][value='1']) input[name=prefix]").fill("Size")
    page.click("button[name=create][value='1']")
    expect(page.locator(".messagelist")).to_contain_text("Created 3 segments")
    assert Segment.objects.filter(name__startswith="Size Company employee count").count() == 3

    page.goto("/admin/segments/segment/dimensions/")
    page.check("input[name=schemes][value=behavioral]")
    page.check("input[name=schemes][value=lifecycle]")
    page.uncheck("input[name=schemes][value=firmographic]")
    page.click("#dimension-form button[type=submit]")
    expect(page.locator("#summary")).to_contain_text("Engagement level × top topic explains most of converted")
    screenshot("dimension-report")
