import csv
import hashlib
import os
import stat
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from activation.exports import execute_run, start_run
from segments.models import Membership
from tests.factories import ActivationFactory, CompanyFactory, ContactFactory, DestinationFactory

pytestmark = pytest.mark.django_db


def h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def people():
    acme = CompanyFactory(name="Acme, Inc.", domain="acme.example")
    jane = ContactFactory(
        email="  Jane.Doe+Ads@GMail.com ",
        first_name="  Zoe\u0308 ",  # decomposed ë
        last_name="Van  der Berg",
        phone="(415) 555-0123",
        country="US",
        region="California",
        city="San Francisco",
        postal_code="94105-1234",
        street_address="1 Market St",
        job_title="VP Marketing",
        company=acme,
    )
    jurgen = ContactFactory(
        email="JUERGEN@Example.DE",
        first_name="Jürgen",
        last_name="Groß-Müller",
        phone="030 1234567",
        country="DE",
        region="Berlin",
        city="Berlin",
        postal_code="10115",
        street_address="Unter den Linden 5",
        job_title="Head of IT",
        company=None,
    )
    bad_phone = ContactFactory(
        email="bad.phone@example.com", first_name="Bo", last_name="Bad", phone="12", country="US"
    )
    bad_email = ContactFactory(email="not-an-email", first_name="No", last_name="Mail", country="US")
    return jane, jurgen, bad_phone, bad_email


def _export(kind: str, contacts, **destination):
    activation = ActivationFactory(destination=DestinationFactory(kind=kind, **destination))
    Membership.objects.bulk_create(Membership(segment=activation.segment, contact=c) for c in contacts)
    return execute_run(start_run(activation).pk)


def _file(media: Path, run) -> bytes:
    assert run.status == "succeeded", run.error
    data = (media / run.file_path).read_bytes()
    assert run.file_size == len(data)
    assert run.file_sha256 == hashlib.sha256(data).hexdigest()
    return data


def test_google_file_hashes_normalised_email_phone_and_names(media, people):
    _jane, _jurgen, bad_phone, bad_email = people

    run = _export("google_customer_match", people)

    assert (
        _file(media, run)
        == (
            "Email,Phone,First Name,Last Name,Country,Zip\n"
            f"{h('jane.doe+ads@gmail.com')},{h('+14155550123')},{h('zoë')},{h('van der berg')},US,94105-1234\n"
            f"{h('juergen@example.de')},{h('+49301234567')},{h('jürgen')},{h('groß-müller')},DE,10115\n"
        ).encode()
    )
    assert (run.exported_count, run.skipped_count) == (2, 2)
    assert run.report["skipped"] == [
        {
            "contact_id": bad_phone.pk,
            "email": "bad.phone@example.com",
            "reason": "phone '12' is not a valid number (country 'US')",
        },
        {"contact_id": bad_email.pk, "email": "not-an-email", "reason": "email 'not-an-email' is not a valid address"},
    ]


def test_google_gmail_dots_are_removed_only_when_the_destination_says_so(media, people):
    jane = people[0]

    run = _export("google_customer_match", [jane], remove_gmail_dots=True)

    assert _file(media, run).splitlines()[1].split(b",")[0] == h("janedoe+ads@gmail.com").encode()


def test_meta_file_hashes_every_key_as_meta_documents(media, people):
    jane, jurgen, *_ = people

    run = _export("meta_custom_audience", [jane, jurgen])

    expected_jane = ["jane.doe+ads@gmail.com", "14155550123", "zoë", "vanderberg", "sanfrancisco", "ca", "94105", "us"]
    expected_jurgen = ["juergen@example.de", "49301234567", "jürgen", "großmüller", "berlin", "berlin", "10115", "de"]
    assert (
        _file(media, run)
        == (
            "EMAIL,PHONE,FN,LN,CT,ST,ZIP,COUNTRY\n"
            + ",".join(h(v) for v in expected_jane)
            + "\n"
            + ",".join(h(v) for v in expected_jurgen)
            + "\n"
        ).encode()
    )


def test_meta_leaves_blank_keys_empty_instead_of_hashing_nothing(media):
    sparse = ContactFactory(email="Only@Example.com", first_name="", last_name="", phone="", country="", city="")

    run = _export("meta_custom_audience", [sparse])

    assert _file(media, run).splitlines()[1] == f"{h('only@example.com')},,,,,,,".encode()


def test_linkedin_file_hashes_email_and_cuts_fields_to_linkedin_limits(media, people):
    jane, jurgen, *_ = people
    jurgen.job_title = "Head of Information Technology and Digital Transformation, EMEA"  # 64 characters
    jurgen.save()

    run = _export("linkedin_matched_audience", [jane, jurgen])

    assert (
        _file(media, run)
        == (
            "email,firstname,lastname,jobtitle,employeecompany,country,googleaid\n"
            f'{h("jane.doe+ads@gmail.com")},Zoe\u0308,Van  der Berg,VP Marketing,"Acme, Inc.",US,\n'
            f"{h('juergen@example.de')},Jürgen,Groß-Müller,Head of Information Technology and Digital Transfo,,DE,\n"
        ).encode()
    )


def test_linkedin_sends_plain_email_when_configured(media, people):
    run = _export("linkedin_matched_audience", [people[1]], linkedin_plain_email=True)

    assert _file(media, run).splitlines()[1].startswith(b"juergen@example.de,J")


def test_csv_file_has_the_chosen_columns_in_order(media, people):
    jane, jurgen, *_ = people

    run = _export("csv", [jane, jurgen], csv_columns=["email", "phone", "company", "city", "lead_score"])

    assert _file(media, run) == (
        b"email,phone,company,city,lead_score\n"
        b'jane.doe+ads@gmail.com,+14155550123,"Acme, Inc.",San Francisco,0\n'
        b"juergen@example.de,+49301234567,,Berlin,0\n"
    )


def test_direct_mail_skips_and_counts_incomplete_addresses(media, people):
    jane, jurgen, bad_phone, _ = people

    run = _export("direct_mail", [jane, jurgen, bad_phone])

    assert (
        _file(media, run)
        == (
            "first_name,last_name,company,street_address,postal_code,city,region,country\n"
            'Zoe\u0308,Van  der Berg,"Acme, Inc.",1 Market St,94105-1234,San Francisco,California,US\n'
            "Jürgen,Groß-Müller,,Unter den Linden 5,10115,Berlin,Berlin,DE\n"
        ).encode()
    )
    assert run.skipped_count == 1
    assert run.report["skipped"][0]["reason"] == "incomplete postal address: missing street_address, postal_code, city"


def test_an_export_streams_in_a_fixed_number_of_queries(media, settings):
    # The count does not grow with the members: 10 and 40 members take the same queries, and few.
    settings.ACTIVATION_EXPORT_CHUNK_SIZE = 1000

    def queries_to_export(members):
        activation = ActivationFactory(destination=DestinationFactory(kind="meta_custom_audience"))
        contacts = ContactFactory.create_batch(members)
        Membership.objects.bulk_create(Membership(segment=activation.segment, contact=c) for c in contacts)
        run = start_run(activation)
        with CaptureQueriesContext(connection) as queries:
            execute_run(run.pk)
        run.refresh_from_db()
        assert run.exported_count == members
        return len(queries)

    queries_to_export(1)  # the first export in a process also reads the worker's id once
    few, many = queries_to_export(10), queries_to_export(40)

    assert few == many
    assert many <= 40


def test_linkedin_file_header_is_the_template_header_exactly(media, people):
    # LinkedIn: "changing or removing template headers will cause an error when you upload".
    run = _export("linkedin_matched_audience", [people[0]])

    header, row = _file(media, run).decode().splitlines()

    assert header == "email,firstname,lastname,jobtitle,employeecompany,country,googleaid"
    assert len(row.replace('"Acme, Inc."', "Acme").split(",")) == 7
    assert row.endswith(",US,")  # no Google advertising id: an empty last column


FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd"]


@pytest.fixture
def formula_people():
    acme = CompanyFactory(name="=1+1", domain="evil.example")
    return [
        ContactFactory(
            email=f"f{index}@example.com",
            first_name=formula,
            last_name="\tTab",
            city="\rReturn",
            street_address="@street",
            postal_code="12345",
            job_title="-",
            lead_score=-5,
            phone="+1 415 555 0123",
            country="US",
            company=acme,
        )
        for index, formula in enumerate(FORMULAS)
    ]


def _cells(media: Path, name: str) -> list[list[str]]:
    with (media / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_csv_files_neutralise_cells_a_spreadsheet_would_run(media, formula_people):
    columns = ["email", "first_name", "last_name", "city", "company", "job_title", "phone", "lead_score"]

    run = _export("csv", formula_people, csv_columns=columns)

    header, *rows = _cells(media, run.file_path)
    assert header == columns
    assert [row[1] for row in rows] == ["'" + formula for formula in FORMULAS]
    for row in rows:
        assert row[2:6] == ["'\tTab", "'\rReturn", "'=1+1", "'-"]
        assert row[6:] == ["+14155550123", "-5"]  # numbers carry no formula: left as they are
        assert all(not cell or cell[0] not in "=+-@\t\r" or cell in ("+14155550123", "-5") for cell in row)


def test_direct_mail_lists_neutralise_cells_a_spreadsheet_would_run(media, formula_people):
    run = _export("direct_mail", formula_people)

    _header, *rows = _cells(media, run.file_path)

    assert [row[0] for row in rows] == ["'" + formula for formula in FORMULAS]
    assert rows[0][1:6] == ["Tab", "'=1+1", "'@street", "12345", "Return"]  # blanks stripped first


def test_removal_files_of_csv_destinations_are_neutralised_too(media, formula_people):
    # Without an identifying column (id, email, phone) a CSV removal row keeps every column.
    activation = ActivationFactory(
        mode="delta", destination=DestinationFactory(kind="csv", csv_columns=["first_name", "company"])
    )
    Membership.objects.bulk_create(Membership(segment=activation.segment, contact=c) for c in formula_people)
    execute_run(start_run(activation).pk)
    Membership.objects.filter(segment=activation.segment).delete()

    second = execute_run(start_run(activation).pk)

    _header, *rows = _cells(media, second.removed_file_path)
    assert sorted(row[0] for row in rows) == sorted("'" + formula for formula in FORMULAS)
    assert {row[1] for row in rows} == {"'=1+1"}


def test_platform_upload_files_keep_the_values_the_platform_matches(media, formula_people):
    # LinkedIn matches on the template's values as given; a quote mark would become part of them.
    run = _export("linkedin_matched_audience", formula_people[:1], linkedin_plain_email=True)

    _header, row = _cells(media, run.file_path)

    assert row[:5] == ["f0@example.com", FORMULAS[0][:35], "Tab", "-", "=1+1"]


@pytest.mark.parametrize("kind", ["csv", "direct_mail", "google_customer_match", "linkedin_matched_audience"])
def test_export_files_are_readable_by_the_service_user_only(media, people, kind):
    extra = {"csv_columns": ["email"]} if kind == "csv" else {}
    activation = ActivationFactory(mode="delta", destination=DestinationFactory(kind=kind, **extra))
    Membership.objects.bulk_create(Membership(segment=activation.segment, contact=c) for c in people[:2])
    activation.destination.min_audience_size = 1
    activation.destination.save()

    run = execute_run(start_run(activation).pk)

    assert run.status == "succeeded", run.error
    for name in (run.file_path, run.removed_file_path):
        assert stat.S_IMODE(os.stat(media / name).st_mode) == 0o600, name
