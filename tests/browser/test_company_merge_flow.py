"""An operator finds duplicate companies, reviews a pair, merges it choosing a value and undoes the
merge, in Chromium."""

import pytest
from playwright.sync_api import expect

from contacts.models import Company
from tests.factories import CompanyFactory, ContactFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_find_review_merge_and_undo(page, log_in_as, superuser, screenshot, run_queued_tasks):
    first = CompanyFactory(name="Acme Ltd", domain="acme.co.uk", industry="")
    second = CompanyFactory(name="Acme Shop", domain="shop.acme.co.uk", industry="retail", technologies=["aws"])
    ContactFactory(company=second, email="buyer@shop.acme.co.uk")
    page.set_viewport_size({"width": 1400, "height": 900})
    log_in_as(superuser)

    page.goto("/admin/contacts/companyduplicatecandidate/")
    page.get_by_role("button", name="Find duplicate companies now").click()
    expect(page.locator(".messagelist")).to_contain_text("queued")
    assert run_queued_tasks() == 1
    page.reload()
    expect(page.get_by_text("same registrable domain")).to_be_visible()
    screenshot("companies-1-queue")
    page.get_by_role("link", name="Review →").click()

    expect(page.locator("#merge-fields tbody tr", has_text="Industry")).to_contain_text("retail")
    page.locator("#merge-fields tbody tr", has_text="Name").first.get_by_label("second").check()
    screenshot("companies-2-review")
    page.get_by_role("button", name="Merge").click()

    expect(page.locator(".messagelist")).to_contain_text("Merged Acme Shop (shop.acme.co.uk) into company")
    kept = Company.objects.get()
    assert (kept.pk, kept.name, kept.industry, kept.contacts.count()) == (first.pk, "Acme Shop", "retail", 1)
    page.get_by_role("link", name="Undo is on the merge's page.").click()
    screenshot("companies-3-merge")
    page.get_by_role("button", name="Undo this merge").click()
    expect(page.locator(".messagelist")).to_contain_text("undone: Acme Shop is back")
    assert Company.objects.get(pk=second.pk).contacts.count() == 1
