"""An operator adds a whole filtered contact list to a static list from the contacts admin (large
enough to go to a background task with progress), uploads an opt-out file to a suppression list,
and reads the static list's page: members and a way to change them, never a rule."""

import pytest
from django.contrib import admin
from playwright.sync_api import expect

from contacts.models import Contact
from segments import static
from segments.models import ListEdit, Membership
from tests.factories import ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_add_a_filtered_result_to_a_static_list_and_upload_an_opt_out_list(
    page, ops_user, log_in_as, screenshot, run_queued_tasks, monkeypatch, tmp_path
):
    monkeypatch.setattr(admin.site._registry[Contact], "list_per_page", 5)
    monkeypatch.setattr(static, "INLINE_MAX", 5)  # 8 contacts: the background path, with progress
    mqls = [ContactFactory(lifecycle_stage="mql", email=f"mql{i}@example.com") for i in range(8)]
    ContactFactory(lifecycle_stage="lead", email="lead@example.com")
    webinar = SegmentFactory(slug="webinar", name="Webinar follow-up", kind="static", rule=None)
    opt_out = SegmentFactory(slug="opt-out", name="Opt-out list", kind="suppression_list", rule=None)
    page.set_viewport_size({"width": 1400, "height": 900})
    log_in_as(ops_user)

    # given the contact list filtered to MQLs, everything selected across pages
    page.goto("/admin/contacts/contact/?lifecycle_stage__exact=mql")
    page.locator("#action-toggle").check()
    page.get_by_role("button", name="Select all 8 contacts").click()
    page.select_option("select[name=action]", "add_to_static_list")
    screenshot("static-lists-1-contact-list")
    page.get_by_role("button", name="Go").click()

    # when the list is chosen
    expect(page.locator("#list-selection")).to_contain_text("all 8 contacts matching")
    page.select_option("#id_list-segment", str(webinar.pk))
    screenshot("static-lists-2-choose-list")
    page.get_by_role("button", name="Add to the list").click()
    expect(page.locator(".messagelist")).to_contain_text("Adding 8 contacts to Webinar follow-up in the background")

    # then the task adds them, and the members page shows the finished edit
    assert run_queued_tasks() >= 1
    page.goto(f"/admin/segments/segment/{webinar.pk}/members/")
    row = page.locator(f"tr[data-edit='{ListEdit.objects.get().pk}']")
    expect(row).to_contain_text("Done")
    expect(row).to_contain_text("8 of 8")
    expect(row).to_contain_text("ops")
    screenshot("static-lists-3-progress")
    assert set(Membership.objects.filter(segment=webinar).values_list("contact_id", flat=True)) == {c.pk for c in mqls}

    # an opt-out file with a malformed row is refused with its row number, then a good one goes in
    bad = tmp_path / "opt-out.csv"
    bad.write_text("email\nmql0@example.com\nnot an address\n", encoding="utf-8")
    page.goto(f"/admin/segments/segment/{opt_out.pk}/members/")
    page.set_input_files("#id_file", str(bad))
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".errornote")).to_contain_text("row 3: not an address")
    screenshot("static-lists-4-upload-error")
    good = tmp_path / "opt-out-fixed.csv"
    good.write_text("email\nmql0@example.com\nmql1@example.com\n", encoding="utf-8")
    page.set_input_files("#id_file", str(good))
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".messagelist")).to_contain_text("Added 2 contact(s) to Opt-out list")

    # the static list's page: members, "Add or remove members", no rule and no "Edit rule"
    page.goto(f"/segments/{webinar.pk}/")
    expect(page.locator("#members")).to_contain_text("mql0@example.com")
    expect(page.locator("#latest-changes")).to_contain_text("by ops")
    expect(page.get_by_role("link", name="Edit rule")).to_have_count(0)
    expect(page.locator("#rule-heading")).to_have_count(0)
    expect(page.get_by_role("link", name="Add or remove members").first).to_be_visible()
    screenshot("static-lists-5-segment-page")
