"""An operator reviews a duplicate pair, merges it choosing a value, undoes the merge, and reads the
criteria coverage report, in Chromium."""

import pytest
from playwright.sync_api import expect

from contacts.models import Contact, DuplicateCandidate
from segments.refresh import refresh_segment
from tests.factories import CompanyFactory, ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_review_merge_undo_and_coverage(page, log_in_as, superuser, screenshot, seeded_by_migrations):
    acme = CompanyFactory(name="Acme", domain="acme.example", industry="software")
    first = ContactFactory(email="jon.smith@acme.example", first_name="Jon", last_name="Smith", company=acme)
    second = ContactFactory(
        email="john@acme.example", first_name="John", last_name="Smith", company=acme, job_title="Head of IT"
    )
    DuplicateCandidate.objects.create(
        contact_a=first, contact_b=second, score=0.95, evidence=["same company and last name"]
    )
    refresh_segment(SegmentFactory(name="Engineers", rule={"field": "job_function", "op": "eq", "value": "it"}).pk)
    page.set_viewport_size({"width": 1400, "height": 900})
    log_in_as(superuser)

    page.goto("/admin/contacts/duplicatecandidate/")
    expect(page.get_by_text("same company and last name")).to_be_visible()
    screenshot("dq-1-queue")
    page.get_by_role("link", name="Review →").click()

    rows = page.locator("#merge-fields tbody tr")
    expect(rows.filter(has_text="Job title")).to_contain_text("Head of IT")
    page.locator("#merge-fields tbody tr", has_text="First name").get_by_label("second").check()
    screenshot("dq-2-review")
    page.get_by_role("button", name="Merge").click()

    expect(page.locator(".messagelist")).to_contain_text("Merged john@acme.example into contact")
    kept = Contact.objects.get()
    assert (kept.pk, kept.first_name, kept.job_title) == (first.pk, "John", "Head of IT")
    page.get_by_role("link", name="Undo is on the merge's page.").click()
    screenshot("dq-3-merge")
    page.get_by_role("button", name="Undo this merge").click()
    expect(page.locator(".messagelist")).to_contain_text("undone: john@acme.example is back")
    assert Contact.objects.count() == 2

    page.goto("/admin/segments/segment/coverage/")
    expect(page.get_by_role("heading", name="Criteria coverage")).to_be_visible()
    industry = page.locator("tr", has_text="Industry").first
    expect(industry).to_contain_text("100.0%")
    expect(industry).to_contain_text("exists")
    expect(page.locator("tr", has_text="Expansion potential")).to_contain_text("needs creation")
    expect(page.locator("tr", has_text="Job function").first).to_contain_text("Engineers")
    screenshot("dq-4-coverage")
    page.locator("tr", has_text="Industry").first.get_by_role("link", name="Industry").click()
    expect(page.locator("#top-values")).to_contain_text("software")
