"""The import pages in the admin: upload, mapping (suggested, edited, saved), preview, progress, error file."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from contacts.models import Contact, ImportJob, ImportMapping, ImportStatus
from tests.factories import ContactFactory, PropertyDefinitionFactory
from tests.segments_support import run_queued

CONTENT = "Mail;Vorname;Stage;Shoe size\nada@example.com;Ada;lead;41\ngrace@example.com;Grace;wizard;39\n"


@pytest.fixture(autouse=True)
def import_dir(settings, tmp_path):
    settings.IMPORT_DIR = tmp_path / "imports"


@pytest.fixture
def ops_client(client, ops_user):
    client.force_login(ops_user)
    return client


def _upload(client, content: str = CONTENT, name: str = "fair.csv"):
    data = {"kind": "contacts", "file": SimpleUploadedFile(name, content.encode())}
    return client.post(reverse("admin:contacts_importjob_add"), data)


def test_upload_suggests_a_mapping_and_names_the_unmapped_column(ops_client):
    response = _upload(ops_client)

    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:contacts_importjob_mapping", args=[job.pk])
    page = ops_client.get(response["Location"])
    form = page.context["form"]
    assert [form[name].initial for _header, name in form.columns] == ["email", "first_name", "lifecycle_stage", ""]
    assert page.context["undeclared"] == ["Shoe size"]
    assert "declare it" in page.content.decode()


def test_a_refused_file_is_named_on_the_upload_form(ops_client):
    response = _upload(ops_client, content="\n\n", name="empty.csv")

    assert response.status_code == 200
    assert response.context["form"].errors["file"] == ["empty.csv is empty."]
    assert not ImportJob.objects.exists()


def test_mapping_without_the_key_is_refused_and_a_saved_mapping_is_offered_again(ops_client):
    _upload(ops_client)
    job = ImportJob.objects.get()
    url = reverse("admin:contacts_importjob_mapping", args=[job.pk])

    refused = ops_client.post(url, {"column_0": "", "column_1": "first_name", "column_2": "", "column_3": ""})
    saved = ops_client.post(
        url, {"column_0": "email", "column_1": "first_name", "column_2": "", "column_3": "", "save_as": "Fair leads"}
    )

    assert refused.status_code == 200
    assert "No column maps to email" in refused.content.decode()
    assert saved.status_code == 302
    job.refresh_from_db()
    assert job.mapping == {"Mail": "email", "Vorname": "first_name", "Stage": "", "Shoe size": ""}
    mapping = ImportMapping.objects.get()
    assert (mapping.name, mapping.columns) == ("Fair leads", job.mapping)
    _upload(ops_client)
    second = ImportJob.objects.latest("id")
    page = ops_client.get(reverse("admin:contacts_importjob_mapping", args=[second.pk]), {"use": mapping.pk})
    form = page.context["form"]
    assert [form[name].initial for _header, name in form.columns] == ["email", "first_name", "", ""]


def test_preview_marks_bad_cells_and_start_runs_the_task(ops_client, django_capture_on_commit_callbacks):
    PropertyDefinitionFactory(key="shoe_size", label="Shoe size", type="number")
    _upload(ops_client)
    job = ImportJob.objects.get()
    url = reverse("admin:contacts_importjob_preview", args=[job.pk])

    page = ops_client.get(url)
    with django_capture_on_commit_callbacks(execute=True):
        started = ops_client.post(url)
    run_queued("contacts.tasks.run_import")

    rows = page.context["rows"]
    assert [r.rejected for r in rows] == [False, True]
    assert "not a valid choice" in rows[1].cells[2][1]
    assert page.context["ignored"] == []
    assert started["Location"] == reverse("admin:contacts_importjob_progress", args=[job.pk])
    job.refresh_from_db()
    assert (job.status, job.created, job.rejected) == (ImportStatus.DONE, 1, 1)
    assert Contact.objects.get().properties == {"shoe_size": 41}
    status = ops_client.get(reverse("admin:contacts_importjob_status", args=[job.pk])).json()
    assert (status["finished"], status["percent"], status["rows_done"], status["rejected"]) == (True, 100.0, 2, 1)
    download = ops_client.get(status["errors_url"])
    text = b"".join(download.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["row", "column", "value", "message"]
    assert rows[1][:3] == ["3", "Stage", "wizard"]
    assert download["Content-Disposition"] == 'attachment; filename="fair-errors.csv"'


def test_cancel_from_the_progress_page(ops_client, django_capture_on_commit_callbacks):
    _upload(ops_client)
    job = ImportJob.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        ops_client.post(reverse("admin:contacts_importjob_preview", args=[job.pk]))

    ops_client.post(reverse("admin:contacts_importjob_progress", args=[job.pk]), {"cancel": "1"})
    run_queued("contacts.tasks.run_import")

    job.refresh_from_db()
    assert job.status == ImportStatus.CANCELLED
    assert not Contact.objects.exists()
    assert job.message == "Cancelled before it started: nothing imported."


def test_sales_cannot_reach_the_import_pages(client, sales_user):
    client.force_login(sales_user)

    response = client.get(reverse("admin:contacts_importjob_add"))

    assert response.status_code in (302, 403)
    assert not ImportJob.objects.exists()


def test_an_enrichment_asks_about_captured_values_and_its_preview_marks_the_cells_kept(
    ops_client, django_capture_on_commit_callbacks
):
    ContactFactory(email="ada@example.com", city="London", region="")
    ContactFactory(email="grace@example.com", city="", region="")
    content = "E-mail,City,Region\nada@example.com,Paris,Ile-de-France\ngrace@example.com,Arlington,Virginia\n"
    upload = {"kind": "enrich_contacts", "file": SimpleUploadedFile("vendor.csv", content.encode())}
    job_url = ops_client.post(reverse("admin:contacts_importjob_add"), upload)["Location"]
    job = ImportJob.objects.get()
    mapping = {"column_0": "email", "column_1": "city", "column_2": "region"}

    page = ops_client.get(job_url).content.decode()
    ops_client.post(job_url, mapping)  # overwrite left off
    kept = ops_client.get(reverse("admin:contacts_importjob_preview", args=[job.pk]))
    ops_client.post(job_url, mapping | {"overwrite_captured": "on"})
    replaced = ops_client.get(reverse("admin:contacts_importjob_preview", args=[job.pk]))

    assert "Overwrite captured values" in page
    assert [[cell[2] for cell in row.cells] for row in kept.context["rows"]] == [[False, True, False], [False] * 3]
    assert 'class="cell-kept"' in kept.content.decode()
    assert not any(cell[2] for row in replaced.context["rows"] for cell in row.cells)
    assert "Overwrite captured values is <strong>on</strong>" in replaced.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        ops_client.post(reverse("admin:contacts_importjob_preview", args=[job.pk]))
    run_queued("contacts.tasks.run_import")
    job.refresh_from_db()
    assert (job.kind, job.overwrite_captured, job.updated, job.kept) == ("enrich_contacts", True, 2, 0)
    assert Contact.objects.get(email="ada@example.com").city == "Paris"
    progress = ops_client.get(reverse("admin:contacts_importjob_progress", args=[job.pk])).content.decode()
    assert "Cells kept (captured value stays)" in progress
    assert 'id="count-created"' not in progress


def test_the_upload_form_offers_the_enrichment_kinds(ops_client):
    page = ops_client.get(reverse("admin:contacts_importjob_add")).content.decode()

    assert '<optgroup label="Enrichment (fills stored records, creates none)">' in page
    assert '<option value="enrich_companies">Company enrichment (matched by domain)</option>' in page
