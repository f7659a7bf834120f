"""File imports (contacts.imports): files with every kind of defect, the stored rows, the error file,
idempotent re-runs, cancel, the import's static segment, and files refused before anything is written."""

import csv
import io
import re
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from openpyxl import Workbook

from contacts import imports
from contacts.models import Activity, Company, Contact, ImportJob, ImportStatus
from segments.models import Membership, Segment
from tests.factories import ContactFactory, PropertyDefinitionFactory
from tests.segments_support import run_queued

pytestmark = pytest.mark.django_db

TASK = "contacts.tasks.run_import"


@pytest.fixture(autouse=True)
def import_dir(settings, tmp_path):
    settings.IMPORT_DIR = tmp_path / "imports"
    return settings.IMPORT_DIR


def upload(name: str, content: bytes | str, *, kind: str = "contacts", user=None) -> ImportJob:
    data = content.encode() if isinstance(content, str) else content
    return imports.start_import(SimpleUploadedFile(name, data), kind=kind, user=user)


def run(job: ImportJob, django_capture_on_commit_callbacks) -> ImportJob:
    with django_capture_on_commit_callbacks(execute=True):
        assert imports.queue_import(job)
    run_queued(TASK)
    job.refresh_from_db()
    return job


def error_rows(job: ImportJob) -> list[dict]:
    with open(imports.error_file_path(job), encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


DEFECTS = (
    "E-mail;First name;Last name;Stage;Customer since;Plan seats;Country;Phone\n"
    "ada@example.com;ada;Lovelace;customer;2024-03-01;12;Germany;030 1234567\n"
    "not-an-email;Bad;Mail;lead;;;;\n"
    "grace@example.com;Grace;Hopper;wizard;;;;\n"
    "alan@example.com;Alan;Turing;lead;31.02.2024;;;\n"
    "edsger@example.com;Edsger;Dijkstra;lead;;many;;\n"
    "ADA@example.com;Ada;Again;lead;;;;\n"
    "barbara@example.com;Barbara;Liskov;sql;1.6.2023;3;USA;\n"
)


def test_a_file_with_every_kind_of_defect_stores_the_good_rows_and_lists_the_bad_cells(
    django_capture_on_commit_callbacks, ops_user
):
    PropertyDefinitionFactory(key="plan_seats", label="Plan seats", type="number")
    job = upload("crm export.csv", "\ufeff" + DEFECTS, user=ops_user)  # a BOM and semicolons

    assert (job.encoding, job.delimiter) == ("utf-8-sig", ";")
    assert job.mapping == {
        "E-mail": "email", "First name": "first_name", "Last name": "last_name", "Stage": "lifecycle_stage",
        "Customer since": "customer_since", "Plan seats": "props.plan_seats", "Country": "country", "Phone": "phone",
    }  # fmt: skip
    job = run(job, django_capture_on_commit_callbacks)

    assert job.status == ImportStatus.DONE
    assert (job.rows_done, job.created, job.updated, job.unchanged, job.rejected) == (7, 2, 0, 0, 5)
    ada = Contact.objects.get(email="ada@example.com")
    assert (ada.first_name, ada.lifecycle_stage, ada.customer_since) == ("Ada", "customer", date(2024, 3, 1))
    assert (ada.country, ada.phone, ada.properties) == ("DE", "+49301234567", {"plan_seats": 12})
    barbara = Contact.objects.get(email="barbara@example.com")
    assert (barbara.customer_since, barbara.country) == (date(2023, 6, 1), "US")
    assert Contact.objects.count() == 2  # nothing of a rejected row was written
    errors = {(e["row"], e["column"]): e for e in error_rows(job)}
    assert set(errors) == {("3", "E-mail"), ("4", "Stage"), ("5", "Customer since"), ("6", "Plan seats"),
                           ("7", "E-mail")}  # fmt: skip
    assert errors[("3", "E-mail")]["value"] == "not-an-email"
    assert "'wizard' is not a valid choice" in errors[("4", "Stage")]["message"]
    assert "is not a date" in errors[("5", "Customer since")]["message"]
    assert errors[("6", "Plan seats")]["message"] == "'many' is not a number."
    assert "earlier row of this file" in errors[("7", "E-mail")]["message"]
    assert "2 created, 0 updated, 0 unchanged, 5 rejected" in job.message


def test_importing_the_same_file_again_changes_nothing(django_capture_on_commit_callbacks):
    content = "email,first_name,company,website\nada@example.com,Ada,Analytical,https://www.analytical.org/\n"
    first = run(upload("a.csv", content), django_capture_on_commit_callbacks)
    stored = Contact.objects.values().get()

    again = run(upload("a.csv", content), django_capture_on_commit_callbacks)

    assert (first.created, first.updated, first.unchanged) == (1, 0, 0)
    assert (again.created, again.updated, again.unchanged, again.rejected) == (0, 0, 1, 0)
    assert Contact.objects.values().get() == stored  # not written again: updated_at too
    assert Membership.objects.filter(segment_id=again.segment_id).count() == 1  # still one of the file's contacts
    assert Company.objects.get().domain == "analytical.org"
    assert first.checksum == again.checksum


def test_an_update_counts_as_updated_and_keeps_unmapped_fields(django_capture_on_commit_callbacks):
    ContactFactory(email="ada@example.com", first_name="Ada", last_name="Byron", city="London")

    job = run(upload("a.csv", "email,last_name\nada@example.com,Lovelace\n"), django_capture_on_commit_callbacks)

    assert (job.created, job.updated, job.unchanged) == (0, 1, 0)
    ada = Contact.objects.get()
    assert (ada.first_name, ada.last_name, ada.city) == ("Ada", "Lovelace", "London")


def test_latin1_file_is_detected_and_read(django_capture_on_commit_callbacks):
    content = "email,first_name,city\nfrancois@example.com,François,Köln\n".encode("latin-1")

    job = upload("latin.csv", content)
    job = run(job, django_capture_on_commit_callbacks)

    assert job.encoding == "cp1252"
    assert Contact.objects.values_list("first_name", "city").get() == ("François", "Köln")


def test_tab_delimited_file(django_capture_on_commit_callbacks):
    job = run(upload("a.tsv", "Email\tVorname\nada@example.com\tAda\n"), django_capture_on_commit_callbacks)

    assert job.mapping == {"Email": "email", "Vorname": "first_name"}
    assert Contact.objects.get().first_name == "Ada"


def _with_cached_formula_values(path: Path, values: dict[str, str]) -> None:
    """Give formula cells the value a spreadsheet program stores when it saves (openpyxl stores none)."""
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    for ref, value in values.items():
        sheet = re.sub(rf'(<c r="{ref}"[^>]*>)(<f>[^<]*</f>)(<v\s*/>|<v></v>)?', rf"\1\2<v>{value}</v>", sheet)
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    with zipfile.ZipFile(path, "w") as target:
        for name, data in parts.items():
            target.writestr(name, data)


def test_xlsx_with_formulas_and_dates(django_capture_on_commit_callbacks, tmp_path):
    PropertyDefinitionFactory(key="seats", label="Seats", type="number")
    PropertyDefinitionFactory(key="trial_ends", label="Trial ends", type="date")
    book = Workbook()
    sheet = book.active
    sheet.append(["Email", "Seats", "Trial ends", "Renewal date", "Lead score"])
    sheet.append(["ada@example.com", "=2*6", datetime(2026, 1, 31), date(2027, 2, 1), 40])
    sheet.append(["grace@example.com", "=1+1", "not a date", None, "=A1"])
    path = tmp_path / "book.xlsx"
    book.save(path)
    _with_cached_formula_values(path, {"B2": "12", "B3": "2"})  # E3 stays uncomputed

    job = run(upload("book.xlsx", path.read_bytes()), django_capture_on_commit_callbacks)

    assert job.file_format == "xlsx"
    ada = Contact.objects.get(email="ada@example.com")
    assert ada.properties == {"seats": 12, "trial_ends": "2026-01-31"}
    assert (ada.renewal_date, ada.lead_score) == (date(2027, 2, 1), 40)
    assert not Contact.objects.filter(email="grace@example.com").exists()
    errors = {(e["row"], e["column"]): e["message"] for e in error_rows(job)}
    assert set(errors) == {("3", "Trial ends"), ("3", "Lead score")}
    assert "never computed" in errors[("3", "Lead score")]


def test_companies_and_activities_import(django_capture_on_commit_callbacks):
    companies = run(
        upload("c.csv", "Company name,Website,Employees,Country\nAcme,https://www.acme.com,250,Deutschland\n",
               kind="companies"),
        django_capture_on_commit_callbacks,
    )  # fmt: skip
    assert companies.created == 1
    assert Company.objects.values_list("name", "domain", "employee_count", "country").get() == (
        "Acme", "acme.com", 250, "DE"
    )  # fmt: skip
    ContactFactory(email="ada@example.com")
    content = (
        "id,email,type,date,topic\n"
        "e1,ada@example.com,email_click,2026-11-01 10:00:00,cloud\n"
        "e2,ada@example.com,teleport,2026-11-01,cloud\n"
        "e3,nobody@example.com,email_open,2026-11-01,cloud\n"
    )
    first = run(upload("a.csv", content, kind="activities"), django_capture_on_commit_callbacks)
    again = run(upload("a.csv", content, kind="activities"), django_capture_on_commit_callbacks)

    assert (first.created, first.rejected, again.created, again.unchanged) == (1, 2, 0, 1)
    assert Activity.objects.get().external_id == "e1"
    messages = {e["row"]: (e["column"], e["message"]) for e in error_rows(first)}
    assert messages["3"][0] == "type"
    assert messages["4"] == ("email", "No contact with email 'nobody@example.com'.")


def test_contacts_of_an_import_form_a_static_segment(django_capture_on_commit_callbacks):
    job = run(upload("fair.csv", "email\nada@example.com\ngrace@example.com\n"), django_capture_on_commit_callbacks)

    segment = Segment.objects.get(pk=job.segment_id)
    assert segment.kind == "static"
    assert segment.name == f"Imported fair.csv {job.created_at:%Y-%m-%d}"
    assert set(Membership.objects.filter(segment=segment).values_list("contact__email", flat=True)) == {
        "ada@example.com", "grace@example.com"
    }  # fmt: skip


def test_a_cancelled_import_stops_and_reports_what_it_did(django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(imports, "BATCH_ROWS", 2)
    content = "email\n" + "".join(f"c{i}@example.com\n" for i in range(6))
    job = upload("big.csv", content)
    with django_capture_on_commit_callbacks(execute=True):
        imports.queue_import(job)
    real_batch = imports.Importer.batch

    def batch_then_cancel(self, rows):
        outcome = real_batch(self, rows)
        imports.cancel_import(job)
        return outcome

    monkeypatch.setattr(imports.Importer, "batch", batch_then_cancel)
    run_queued(TASK)

    job.refresh_from_db()
    assert job.status == ImportStatus.CANCELLED
    assert (job.rows_done, job.created) == (2, 2)
    assert Contact.objects.count() == 2
    assert job.message.startswith("Cancelled after 2 rows")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "empty.csv is empty."),
        ("blank.csv", b"\n\n", "blank.csv is empty."),
        ("picture.png", b"\x89PNG\r\n\x1a\n\x00\x00", "neither a CSV file nor an Excel workbook"),
        ("fake.xlsx", b"email\nada@example.com\n", "neither a CSV file nor an Excel workbook"),
        ("broken.xlsx", b"PK\x03\x04not a zip", "The workbook cannot be read"),
        ("twice.csv", b"email,email\na@example.com,b@example.com\n", "the column 'email' appears twice"),
    ],
)
def test_unreadable_files_are_refused_before_anything_is_stored(name, content, message, import_dir):
    with pytest.raises(imports.ImportRefused, match=re.escape(message)):
        upload(name, content)

    assert not ImportJob.objects.exists()
    assert not list(Path(import_dir).glob("*"))


def test_a_file_over_the_size_limit_is_refused(settings):
    settings.IMPORT_MAX_BYTES = 10

    with pytest.raises(imports.ImportRefused, match="files up to 10 bytes"):
        upload("a.csv", "email\nada@example.com\n")
    assert not ImportJob.objects.exists()


def test_a_mapping_without_the_key_column_is_refused():
    job = upload("a.csv", "name,city\nAda,London\n")

    problems = imports.check_mapping(job.kind, job.headers, job.mapping)

    assert problems == ["No column maps to email, which contacts are matched by; map one to it."]


def test_a_mapping_with_one_target_twice_is_refused():
    job = upload("a.csv", "email,mail2\nada@example.com,x@example.com\n")

    problems = imports.check_mapping(job.kind, job.headers, {"email": "email", "mail2": "email"})

    assert problems == ["Columns 'email', 'mail2' all map to email; map one column to each field."]


def test_preview_validates_cells_and_writes_nothing():
    job = upload("a.csv", "email,lifecycle_stage\nada@example.com,lead\ngrace@example.com,wizard\n")

    rows = imports.preview(job)

    assert [(r.number, r.rejected) for r in rows] == [(2, False), (3, True)]
    assert rows[1].cells[1][0] == "wizard"
    assert "not a valid choice" in rows[1].cells[1][1]
    assert rows[0].cells == [("ada@example.com", "", False), ("lead", "", False)]
    assert not Contact.objects.exists()


def test_the_import_task_runs_once_even_when_delivered_twice(django_capture_on_commit_callbacks):
    job = run(upload("a.csv", "email\nada@example.com\n"), django_capture_on_commit_callbacks)

    assert imports.run_import(job.pk).endswith("not queued (cancelled, or run by another worker)")
    job.refresh_from_db()
    assert job.created == 1


def test_error_file_quotes_values_with_delimiters(django_capture_on_commit_callbacks):
    job = run(upload("a.csv", 'email,first_name\n"bad, mail",Ada\n'), django_capture_on_commit_callbacks)

    text = imports.error_file_path(job).read_text(encoding="utf-8")
    assert list(csv.reader(io.StringIO(text)))[1][:3] == ["2", "email", "bad, mail"]


def test_a_key_repeated_in_a_later_batch_is_rejected(django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(imports, "FIRST_BATCH_ROWS", 2)
    monkeypatch.setattr(imports, "BATCH_ROWS", 2)
    content = "email\nada@example.com\ngrace@example.com\nalan@example.com\nAda@Example.com\n"

    job = run(upload("a.csv", content), django_capture_on_commit_callbacks)

    assert (job.created, job.rejected) == (3, 1)
    assert [(e["row"], e["value"]) for e in error_rows(job)] == [("5", "Ada@Example.com")]
