"""An operator enriches stored contacts from a vendor's file: the kind at upload, the overwrite
choice, the preview's kept cells, the summary, and the coverage report afterwards."""

import pytest
from playwright.sync_api import expect

from contacts.models import Contact
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db(transaction=True)

FILE = (
    "Work email,Seniority,City\n"
    "ada@example.com,vp,London\n"
    "grace@example.com,director,Arlington\n"
    "nobody@example.com,manager,Paris\n"
)


@pytest.fixture(autouse=True)
def import_dir(settings, tmp_path):
    settings.IMPORT_DIR = tmp_path / "imports"


def test_enrich_contacts_then_read_the_coverage(
    page, log_in_as, superuser, screenshot, run_queued_tasks, tmp_path, seeded_by_migrations
):
    ContactFactory(email="ada@example.com", seniority="cxo", city="")
    ContactFactory(email="grace@example.com", seniority="", city="")
    source = tmp_path / "vendor.csv"
    source.write_text(FILE, encoding="utf-8")
    page.set_viewport_size({"width": 1300, "height": 800})
    log_in_as(superuser)

    page.goto("/admin/contacts/importjob/add/")
    page.select_option("#id_kind", "enrich_contacts")
    page.set_input_files("#id_file", str(source))
    screenshot("enrich-1-upload")
    page.get_by_role("button", name="Upload and map columns").click()

    expect(page.get_by_label("Work email")).to_have_value("email")
    expect(page.get_by_label("Seniority")).to_have_value("seniority")
    expect(page.get_by_label("Overwrite captured values")).not_to_be_checked()
    screenshot("enrich-2-mapping")
    page.get_by_role("button", name="Preview the first rows").click()

    expect(page.locator("td.cell-kept")).to_have_count(1)
    expect(page.locator("td.cell-kept")).to_contain_text("vp")
    expect(page.locator("tr.rejected")).to_contain_text("never creates one")
    screenshot("enrich-3-preview")
    page.get_by_role("button", name="Start the import").click()

    run_queued_tasks()
    expect(page.locator("#import-status")).to_have_text("Done", timeout=15_000)
    expect(page.locator("#count-updated")).to_have_text("2")
    expect(page.locator("#count-rejected")).to_have_text("1")
    expect(page.locator("#count-kept")).to_have_text("1")
    screenshot("enrich-4-done")
    assert Contact.objects.get(email="ada@example.com").seniority == "cxo"

    page.goto("/admin/segments/segment/coverage/")
    seniority = page.locator("tr", has_text="Seniority").first
    expect(seniority).to_contain_text("captured, 50% enriched")
    expect(seniority).to_contain_text("100.0%")
    screenshot("enrich-5-coverage")
