"""An operator imports a CSV file in the admin: upload, mapping, preview, progress, errors."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from contacts.models import Contact, ImportJob
from tests.factories import PropertyDefinitionFactory

pytestmark = pytest.mark.django_db(transaction=True)

FILE = (
    "E-mail;First name;Last name;Job title;Country;Lifecycle stage;Plan seats;Notes\n"
    "ada@example.com;ada;Lovelace;VP Engineering;Deutschland;customer;12;met at the fair\n"
    "grace@example.com;Grace;Hopper;CTO;USA;wizard;3;\n"
    "not-an-email;Alan;Turing;;UK;lead;;\n"
    "edsger@example.com;Edsger;Dijkstra;Senior Engineer;Netherlands;lead;many;\n"
    "barbara@example.com;Barbara;Liskov;Head of Product;US;sql;5;call back\n"
)


@pytest.fixture(autouse=True)
def import_dir(settings, tmp_path):
    settings.IMPORT_DIR = tmp_path / "imports"


def test_import_through_mapping_preview_progress_and_errors(
    page, log_in_as, superuser, screenshot, run_queued_tasks, tmp_path, seeded_by_migrations
):
    PropertyDefinitionFactory(key="plan_seats", label="Plan seats", type="number", layer="value")
    source = tmp_path / "fair leads.csv"
    source.write_text(FILE, encoding="utf-8")
    page.set_viewport_size({"width": 1400, "height": 900})
    log_in_as(superuser)

    page.goto("/admin/contacts/importjob/add/")
    page.select_option("#id_kind", "contacts")
    page.set_input_files("#id_file", str(source))
    screenshot("import-1-upload")
    page.get_by_role("button", name="Upload and map columns").click()

    expect(page.get_by_role("heading", name="Map the columns of fair leads.csv")).to_be_visible()
    expect(page.get_by_label("E-mail")).to_have_value("email")
    expect(page.get_by_label("Plan seats")).to_have_value("props.plan_seats")
    expect(page.get_by_label("Notes")).to_have_value("")
    page.get_by_label("Save this mapping as").fill("Fair leads")
    screenshot("import-2-mapping")
    page.get_by_role("button", name="Preview the first rows").click()

    expect(page.locator(".import-preview tbody tr")).to_have_count(5)
    expect(page.locator(".import-preview tr.rejected")).to_have_count(3)
    expect(page.locator("td.cell-error").first).to_contain_text("not a valid choice")
    expect(page.locator(".import-notice")).to_contain_text("Notes")
    screenshot("import-3-preview")
    page.get_by_role("button", name="Start the import").click()

    expect(page.locator("#import-status")).to_have_text("Queued")
    assert run_queued_tasks() == 1
    expect(page.locator("#import-status")).to_have_text("Done", timeout=15_000)
    expect(page.locator("#count-created")).to_have_text("2")
    expect(page.locator("#count-rejected")).to_have_text("3")
    expect(page.locator("#rows-done")).to_have_text("5")
    expect(page.locator("#segment-link")).to_contain_text("Imported fair leads.csv")
    screenshot("import-4-done")
    with page.expect_download() as download:
        page.locator("#errors-link").click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "row,column,value,message"
    assert [line.split(",")[:2] for line in lines[1:]] == [
        ["3", "Lifecycle stage"], ["4", "E-mail"], ["5", "Plan seats"]
    ]  # fmt: skip

    ada = Contact.objects.get(email="ada@example.com")
    assert (ada.first_name, ada.country, ada.job_function, ada.seniority) == ("Ada", "DE", "engineering", "vp")
    assert ImportJob.objects.get().rejected == 3
