"""Enrichment imports (contacts.enrichment through contacts.imports): keyed by e-mail or domain,
never creating a record, never overwriting a captured value unless asked, empty cells, re-runs,
bad keys in the error file, what the coverage report says afterwards, and a query count that does
not grow with the rows."""

import csv
from datetime import datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts import company_merging, imports, merging, writes
from contacts.models import Company, Contact, ImportJob, ImportStatus, PendingChange
from segments.coverage import EXISTS, NEEDS_ENRICHMENT, coverage_report
from segments.models import Membership, Segment
from tests.factories import CompanyFactory, ContactFactory, PropertyDefinitionFactory
from tests.segments_support import run_queued

pytestmark = pytest.mark.django_db

TASK = "contacts.tasks.run_import"


@pytest.fixture(autouse=True)
def import_dir(settings, tmp_path):
    settings.IMPORT_DIR = tmp_path / "imports"


def enrich(content: str, capture, *, kind: str = "enrich_contacts", overwrite: bool = False) -> ImportJob:
    job = imports.start_import(SimpleUploadedFile("vendor.csv", content.encode()), kind=kind, user=None)
    if overwrite:
        job.overwrite_captured = True
        job.save(update_fields=["overwrite_captured"])
    with capture(execute=True):
        assert imports.queue_import(job)
    run_queued(TASK)
    job.refresh_from_db()
    assert job.status == ImportStatus.DONE, job.message
    return job


def error_rows(job: ImportJob) -> list[dict]:
    with open(imports.error_file_path(job), encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def counts(job: ImportJob) -> tuple[int, int, int, int, int]:
    return job.created, job.updated, job.unchanged, job.rejected, job.kept


def test_contacts_are_matched_by_normalised_email_and_filled_as_enriched(django_capture_on_commit_callbacks):
    PropertyDefinitionFactory(key="plan_seats", label="Plan seats", type="number", layer="value")
    ada = ContactFactory(email="ada@example.com", country="", job_title="")
    content = "E-mail,Job title,Country,Plan seats\n ADA@Example.com ,VP Engineering,Deutschland,12\n"

    job = enrich(content, django_capture_on_commit_callbacks)

    assert counts(job) == (0, 1, 0, 0, 0)
    ada.refresh_from_db()
    assert (ada.job_title, ada.job_function, ada.seniority) == ("VP Engineering", "engineering", "vp")
    assert (ada.country, ada.properties) == ("DE", {"plan_seats": 12})
    assert ada.original_values == {"country": "Deutschland"}  # what the file said, as for any import
    assert set(ada.enriched_at) == {"job_title", "job_function", "seniority", "country", "props.plan_seats"}
    assert datetime.fromisoformat(ada.enriched_at["country"]) == ada.updated_at
    assert Contact.objects.count() == 1
    assert "Enriched 1 rows" in job.message
    assert "0 cells kept" in job.message


def test_companies_are_matched_by_domain_and_their_contacts_are_announced(django_capture_on_commit_callbacks):
    acme = CompanyFactory(domain="acme.com", industry="", employee_count=None)
    person = ContactFactory(company=acme)
    PendingChange.objects.all().delete()
    content = "Website,Industry,Employees,Technologies\nhttps://www.Acme.com/about,logistics,250,aws; snowflake\n"

    job = enrich(content, django_capture_on_commit_callbacks, kind="enrich_companies")

    assert counts(job) == (0, 1, 0, 0, 0)
    acme.refresh_from_db()
    assert (acme.industry, acme.employee_count, acme.technologies) == ("logistics", 250, ["aws", "snowflake"])
    assert set(acme.enriched_at) == {"industry", "employee_count", "technologies"}
    assert list(PendingChange.objects.values_list("contact_id", flat=True)) == [person.pk]
    assert Company.objects.count() == 1


def test_a_key_matching_no_record_is_rejected_with_row_and_column_and_nothing_is_created(
    django_capture_on_commit_callbacks,
):
    ContactFactory(email="ada@example.com", city="")
    content = "email,city\nada@example.com,London\nnobody@example.com,Paris\nnot-an-email,Rome\n"

    job = enrich(content, django_capture_on_commit_callbacks)

    assert counts(job) == (0, 1, 0, 2, 0)
    assert Contact.objects.count() == 1
    assert Contact.objects.get().city == "London"  # a good row beside bad ones is stored
    errors = error_rows(job)
    assert [(e["row"], e["column"], e["value"]) for e in errors] == [
        ("3", "email", "nobody@example.com"), ("4", "email", "not-an-email")
    ]  # fmt: skip
    assert errors[0]["message"] == (
        "No contact with email 'nobody@example.com': an enrichment fills stored records and never creates one."
    )

    companies = enrich("domain,industry\nunknown.example,retail\n", django_capture_on_commit_callbacks,
                       kind="enrich_companies")  # fmt: skip
    assert counts(companies) == (0, 0, 0, 1, 0)
    assert not Company.objects.exists()
    assert error_rows(companies)[0]["column"] == "domain"


def test_captured_values_are_kept_unless_overwrite_is_asked(django_capture_on_commit_callbacks):
    ContactFactory(email="ada@example.com", job_title="CTO", job_function="executive", seniority="cxo", city="")
    content = "email,job_title,city\nada@example.com,VP Sales,Berlin\n"

    kept = enrich(content, django_capture_on_commit_callbacks)

    ada = Contact.objects.get()
    assert (ada.job_title, ada.job_function, ada.seniority, ada.city) == ("CTO", "executive", "cxo", "Berlin")
    assert set(ada.enriched_at) == {"city"}
    assert counts(kept) == (0, 1, 0, 0, 1)
    assert "1 cells kept their captured value." in kept.message

    overwritten = enrich(content, django_capture_on_commit_callbacks, overwrite=True)

    ada.refresh_from_db()
    assert (ada.job_title, ada.job_function, ada.seniority) == ("VP Sales", "sales", "vp")
    assert set(ada.enriched_at) == {"city", "job_title", "job_function", "seniority"}
    assert counts(overwritten) == (0, 1, 0, 0, 0)


def test_an_empty_cell_never_clears_a_value(django_capture_on_commit_callbacks):
    ContactFactory(email="ada@example.com", city="London", region="")
    enrich("email,region\nada@example.com,Greater London\n", django_capture_on_commit_callbacks)

    job = enrich("email,city,region\nada@example.com,,\n", django_capture_on_commit_callbacks, overwrite=True)

    ada = Contact.objects.get()
    assert (ada.city, ada.region) == ("London", "Greater London")  # captured and enriched alike
    assert counts(job) == (0, 0, 1, 0, 0)
    assert writes.enrich_contacts([{"email": "ada@example.com", "city": "", "birth_year": None}]).unchanged


def test_enriched_values_are_enriched_again_and_the_same_file_twice_changes_nothing(
    django_capture_on_commit_callbacks,
):
    ContactFactory(email="ada@example.com", city="")
    content = "email,city\nada@example.com,Berlin\n"
    enrich(content, django_capture_on_commit_callbacks)
    stored = Contact.objects.values().get()
    PendingChange.objects.all().delete()

    again = enrich(content, django_capture_on_commit_callbacks)

    assert counts(again) == (0, 0, 1, 0, 0)
    assert Contact.objects.values().get() == stored  # not written: updated_at and the mark's time too
    assert not PendingChange.objects.exists()  # nothing announced

    newer = enrich("email,city\nada@example.com,Munich\n", django_capture_on_commit_callbacks)

    ada = Contact.objects.get()
    assert (ada.city, counts(newer)) == ("Munich", (0, 1, 0, 0, 0))  # enriched before: no overwrite needed
    assert ada.enriched_at["city"] > stored["enriched_at"]["city"]


def test_a_captured_change_makes_an_enriched_value_captured(django_capture_on_commit_callbacks):
    ContactFactory(email="ada@example.com", city="", region="")
    enrich("email,city,region\nada@example.com,Berlin,Berlin\n", django_capture_on_commit_callbacks)
    ada = Contact.objects.get()

    ada.city = "Potsdam"  # typed in the admin or sent through the API
    writes.save(ada)
    writes.upsert_contacts([{"email": "ada@example.com", "region": "Brandenburg"}])  # a regular import

    ada.refresh_from_db()
    assert ada.enriched_at == {}
    job = enrich("email,city,region\nada@example.com,Berlin,Berlin\n", django_capture_on_commit_callbacks)
    ada.refresh_from_db()
    assert (ada.city, ada.region, job.kept) == ("Potsdam", "Brandenburg", 2)


def test_a_merge_keeps_the_source_of_each_value(django_capture_on_commit_callbacks):
    survivor = ContactFactory(email="ada@example.com", job_title="", city="London")
    loser = ContactFactory(email="ada.lovelace@example.com", job_title="", city="")
    enrich("email,job_title,city\nada.lovelace@example.com,Countess,Paris\n", django_capture_on_commit_callbacks)

    merging.merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)

    survivor.refresh_from_db()
    assert (survivor.job_title, survivor.city) == ("Countess", "London")
    assert set(survivor.enriched_at) == {"job_title"}  # the loser's enriched title; the survivor's own city


def test_a_company_merge_keeps_the_source_of_each_value(django_capture_on_commit_callbacks):
    survivor = CompanyFactory(domain="acme.com", industry="", employee_count=500)
    loser = CompanyFactory(domain="acme.co.uk", industry="", employee_count=None)
    content = "domain,industry,employees\nacme.co.uk,logistics,480\n"
    enrich(content, django_capture_on_commit_callbacks, kind="enrich_companies")

    company_merging.merge_companies(survivor_id=survivor.pk, loser_id=loser.pk)

    survivor.refresh_from_db()
    assert (survivor.industry, survivor.employee_count) == ("logistics", 500)
    assert set(survivor.enriched_at) == {"industry"}


def test_an_enrichment_names_the_fields_it_cannot_fill():
    ContactFactory(email="ada@example.com")

    result = writes.enrich_contacts([{"email": "ada@example.com", "lifecycle_stage": "customer", "city": "Rome"}])

    assert result.failed == {0: {"lifecycle_stage": [
        "An enrichment does not fill a contact's lifecycle_stage; it fills first_name, last_name, phone, job_title, "
        "job_function, seniority, country, region, city, postal_code, street_address, time_zone, language, "
        "birth_year, gender, income_band, education, marital_status, interests, values, technologies and declared "
        "properties."
    ]}}  # fmt: skip
    assert Contact.objects.get().city != "Rome"
    assert "lifecycle_stage" not in imports.targets("enrich_contacts")
    assert imports.check_mapping("enrich_contacts", ["email"], {"email": "email"}) == [
        "Only email is mapped; map the columns the enrichment fills."
    ]


def test_the_changed_contacts_are_announced_and_form_a_segment(django_capture_on_commit_callbacks):
    changed = ContactFactory(email="ada@example.com", city="")
    same = ContactFactory(email="grace@example.com", city="Arlington")
    PendingChange.objects.all().delete()

    content = "email,city\nada@example.com,Berlin\ngrace@example.com,Arlington\n"
    job = enrich(content, django_capture_on_commit_callbacks)

    assert list(PendingChange.objects.values_list("contact_id", flat=True)) == [changed.pk]
    segment = Segment.objects.get(pk=job.segment_id)
    assert segment.name.startswith("Enriched vendor.csv ")
    assert set(Membership.objects.filter(segment=segment).values_list("contact_id", flat=True)) == {
        changed.pk, same.pk
    }  # fmt: skip


def test_the_coverage_report_shows_the_enriched_source_and_the_higher_fill_rate(
    django_capture_on_commit_callbacks,
):
    for n in range(5):
        ContactFactory(email=f"p{n}@example.com", seniority="director" if n == 0 else "")

    def seniority():
        criterion = next(c for c in coverage_report().criteria if c.name == "Seniority")
        return criterion.status, criterion.fields[0]

    status, before = seniority()
    assert (status, before.filled, before.percent, before.sources) == (NEEDS_ENRICHMENT, 1, 20.0, "captured")

    rows = "".join(f"p{n}@example.com,{'vp' if n < 3 else 'manager'}\n" for n in range(5))
    job = enrich("email,seniority\n" + rows, django_capture_on_commit_callbacks)

    status, after = seniority()
    assert counts(job) == (0, 4, 1, 0, 1)  # p0's captured seniority stays: its row changes nothing
    assert (status, after.filled, after.percent, after.enriched) == (EXISTS, 5, 100.0, 4)
    assert after.sources == "captured, 80% enriched"
    assert after.freshest == Contact.objects.get(email="p4@example.com").updated_at

    enrich("email,seniority\np0@example.com,vp\n", django_capture_on_commit_callbacks, overwrite=True)
    assert seniority()[1].sources == "enriched"


def test_queries_do_not_grow_with_the_rows():
    PropertyDefinitionFactory(key="plan_seats", type="number")

    def queries(first: int, n: int) -> tuple[int, int]:
        ContactFactory.create_batch(n, city="London", job_title="")
        emails = list(Contact.objects.order_by("-pk").values_list("email", flat=True)[:n])
        rows = [{"email": e, "city": "Paris", "job_title": "CTO", "properties": {"plan_seats": 3}} for e in emails]
        content = "email,city,job_title,plan_seats\n" + "".join(f"{e},Rome,CEO,4\n" for e in emails)
        job = imports.start_import(SimpleUploadedFile("v.csv", content.encode()), kind="enrich_contacts", user=None)
        with CaptureQueriesContext(connection) as written:
            result = writes.enrich_contacts(rows, overwrite=first % 2 == 1)
        with CaptureQueriesContext(connection) as previewed:  # the import's own path, rolled back
            assert len(imports.preview(job, limit=100)) == n
        assert len(result.updated) == n
        assert not result.failed
        return len(written.captured_queries), len(previewed.captured_queries)

    assert queries(0, 3) == queries(1, 60)
