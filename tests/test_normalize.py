"""Normalisation (contacts.normalize): each rule, and the same result through the bulk API, the
REST API, the admin and the normalize_contacts job, with what was typed kept."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from contacts import normalize
from contacts.models import Company, Contact, JobTitleRule
from tests.admin_forms import change_form_data
from tests.factories import ContactFactory


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("  Ada@Example.COM ", "ada@example.com"),
        ("juergen@Müller.de", "juergen@xn--mller-kva.de"),
        ("ada+news@example.com", "ada+news@example.com"),
    ],
)
def test_email_is_trimmed_lowered_and_its_domain_idna(typed, stored):
    assert normalize.email(typed) == stored


@pytest.mark.parametrize(
    "typed", ["ada", "ada@", "@example.com", "ada@@example.com", "ada@exa mple.com", "jürgen@example.com"]
)
def test_email_with_bad_syntax_is_refused(typed):
    with pytest.raises(ValidationError, match=re.escape(repr(typed))):
        normalize.email(typed)


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [
        ("ada@gmial.com", "ada@gmail.com"),
        ("ada@hotmial.com", "ada@hotmail.com"),
        ("ada@yaho.com", "ada@yahoo.com"),
        ("ada@acme.con", "ada@acme.com"),
        ("ada@gmail.com", None),
        ("ada@gmx.com", None),  # gmx.de is another domain
        ("ada@acme.com", None),
    ],
)
def test_common_domain_typos_get_a_suggestion(typed, suggested):
    assert normalize.email_suggestion(typed) == suggested


@pytest.mark.parametrize(
    ("typed", "region", "stored"),
    [
        ("+1 (415) 555-0123", "", "+14155550123"),
        ("030 1234567", "DE", "+49301234567"),
        ("0044 20 7946 0958", "DE", "+442079460958"),
        ("", "DE", ""),
    ],
)
def test_phone_becomes_e164_read_in_the_contacts_country(typed, region, stored):
    assert normalize.phone(typed, region=region) == stored


@pytest.mark.parametrize(("typed", "region"), [("030 1234567", ""), ("+49 12", ""), ("call me", "DE")])
def test_phone_that_cannot_be_read_is_refused_with_the_reason(typed, region):
    with pytest.raises(ValidationError, match=re.escape(repr(typed))):
        normalize.phone(typed, region=region)


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("de", "DE"), ("DEU", "DE"), ("Germany", "DE"), ("Deutschland", "DE"), ("USA", "US"), ("U.S.A.", "US"),
        ("United States", "US"), ("UK", "GB"), ("United Kingdom", "GB"), ("Türkiye", "TR"), ("Côte d'Ivoire", "CI"),
        ("  south korea ", "KR"), ("", ""),
    ],
)  # fmt: skip
def test_country_names_codes_and_aliases_become_iso_alpha_2(typed, code):
    assert normalize.country(typed) == code


def test_unknown_country_is_refused_naming_the_value():
    with pytest.raises(ValidationError, match="'Atlantis' is not a country"):
        normalize.country("Atlantis")


@pytest.mark.parametrize(
    ("typed", "domain"),
    [
        ("https://www.Acme.com/about?x=1", "acme.com"),
        ("acme.com", "acme.com"),
        ("http://shop.acme.co.uk:8080", "shop.acme.co.uk"),
        ("www.bücher.de", "xn--bcher-kva.de"),
        ("sales@acme.com", "acme.com"),
    ],
)
def test_company_domain_from_a_website_url(typed, domain):
    assert normalize.domain(typed) == domain


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("  ada   lovelace ", "Ada Lovelace"),
        ("JEAN-LUC", "Jean-Luc"),
        ("o'brien", "O'Brien"),
        ("McDonald", "McDonald"),
        ("van Dijk", "van Dijk"),
        ("ΕΛΈΝΗ", "Ελένη"),
        ("иван", "Иван"),
        ("山田  太郎", "山田 太郎"),
        ("José", "José"),
    ],
)
def test_names_get_whitespace_and_casing_fixed_without_touching_mixed_case_or_caseless_scripts(typed, stored):
    assert normalize.person_name(typed) == stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("title", "function", "seniority"),
    [
        ("VP Marketing", "marketing", "vp"),
        ("Chief Technology Officer", "engineering", "cxo"),
        ("Senior Software Engineer", "engineering", "senior"),
        ("Head of IT", "it", "director"),
        ("Account Executive", "sales", ""),
        ("Geschäftsführer", "executive", "director"),
        ("Astronaut", "", ""),
    ],
)
def test_job_title_maps_to_function_and_seniority_through_the_default_table(title, function, seniority):
    assert JobTitleRule.objects.title_map().classify(title) == (function, seniority)


@pytest.mark.django_db
def test_an_edited_title_rule_changes_the_mapping():
    JobTitleRule.objects.create(keyword="astronaut", job_function="operations", seniority="senior")

    assert JobTitleRule.objects.title_map().classify("Astronaut") == ("operations", "senior")


def test_normalize_contact_keeps_the_originals_of_what_changed_and_reads_the_phone_in_the_rows_country():
    result = normalize.normalize_contact(
        {"email": "Ada@Example.com", "first_name": "ada", "last_name": "Lovelace", "country": "Germany",
         "phone": "030 1234567"}
    )  # fmt: skip

    assert result.values == {
        "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "country": "DE",
        "phone": "+49301234567",
    }  # fmt: skip
    assert result.originals == {
        "email": "Ada@Example.com", "first_name": "ada", "country": "Germany", "phone": "030 1234567"
    }  # fmt: skip
    assert result.errors == {}


@pytest.fixture
def writer(api_client):
    return api_client("contacts:write", "contacts:read")


def test_bulk_api_normalises_rows_and_keeps_originals(writer):
    ContactFactory(email="grace@example.com", country="US", phone="")

    response = writer.post(
        "/api/v1/contacts/bulk-upsert/",
        {"rows": [
            {"email": " Ada@Example.com", "first_name": "ADA", "country": "Deutschland", "phone": "030 1234567",
             "job_title": "VP Engineering"},
            {"email": "grace@example.com", "phone": "(415) 555-0123"},
            {"email": "alan@example.com", "country": "Atlantis", "phone": "12"},
        ]},
        format="json",
    )  # fmt: skip

    assert response.status_code == 200, response.json()
    assert [f["index"] for f in response.json()["failed"]] == [2]
    assert {e["path"] for e in response.json()["failed"][0]["errors"]} == {"rows[2].country", "rows[2].phone"}
    ada = Contact.objects.get(email="ada@example.com")
    assert (ada.first_name, ada.country, ada.phone) == ("Ada", "DE", "+49301234567")
    assert (ada.job_function, ada.seniority) == ("engineering", "vp")
    assert ada.original_values == {
        "email": " Ada@Example.com", "first_name": "ADA", "country": "Deutschland", "phone": "030 1234567"
    }  # fmt: skip
    # An update reads a national number in the stored contact's country.
    assert Contact.objects.get(email="grace@example.com").phone == "+14155550123"


def test_rest_api_normalises_a_created_contact(writer):
    response = writer.post(
        "/api/v1/contacts/",
        {"email": "Ada@Example.com", "country": "UK", "phone": "020 7946 0958", "last_name": "LOVELACE"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    ada = Contact.objects.get(email="ada@example.com")
    assert (ada.country, ada.phone, ada.last_name) == ("GB", "+442079460958", "Lovelace")
    assert response.json()["original_values"]["country"] == "UK"


def test_rest_api_refuses_an_unknown_country_naming_the_field(writer):
    response = writer.post("/api/v1/contacts/", {"email": "ada@example.com", "country": "Atlantis"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "country"
    assert not Contact.objects.exists()


def test_admin_normalises_typed_values_and_shows_them_kept(client, ops_user):
    client.force_login(ops_user)
    contact = ContactFactory(email="ada@example.com", country="", phone="", job_title="", job_function="")
    url = reverse("admin:contacts_contact_change", args=[contact.pk])
    data = change_form_data(client.get(url))
    data |= {"country": "France", "phone": "01 23 45 67 89", "first_name": "ADA", "job_title": "Directeur Marketing"}

    response = client.post(url, data, follow=True)

    assert response.status_code == 200
    contact.refresh_from_db()
    assert (contact.country, contact.phone, contact.first_name) == ("FR", "+33123456789", "Ada")
    assert (contact.job_function, contact.seniority) == ("marketing", "director")
    assert contact.original_values["phone"] == "01 23 45 67 89"


def test_admin_names_a_bad_phone_and_saves_nothing(client, ops_user):
    client.force_login(ops_user)
    contact = ContactFactory(email="ada@example.com", country="DE", phone="")
    url = reverse("admin:contacts_contact_change", args=[contact.pk])
    data = change_form_data(client.get(url)) | {"phone": "not a number"}

    response = client.post(url, data)

    assert response.status_code == 200
    assert "cannot be read as a phone number" in response.context["adminform"].form.errors["phone"][0]
    contact.refresh_from_db()
    assert contact.phone == ""


def test_admin_company_domain_from_website(client, ops_user):
    client.force_login(ops_user)
    data = {"name": "Acme", "domain": "https://www.acme.com/about", "country": "USA", "technologies": "[]"}

    response = client.post(reverse("admin:contacts_company_add"), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    company = Company.objects.get()
    assert (company.domain, company.country) == ("acme.com", "US")
    assert company.original_values["domain"] == "https://www.acme.com/about"


@pytest.mark.django_db
def test_normalize_contacts_job_rewrites_stored_values_and_reports(capsys):
    # Stored by a path that did not normalise (raw update, as older data would be).
    ada = ContactFactory(email="ada@example.com")
    grace = ContactFactory(email="grace@example.com")
    clash = ContactFactory(email="other@example.com")
    Contact.objects.filter(pk=ada.pk).update(
        country="de", phone="030 1234567", first_name="ADA", job_title="CTO", job_function="", seniority=""
    )
    Contact.objects.filter(pk=grace.pk).update(country="xx", phone="")
    Contact.objects.filter(pk=clash.pk).update(email="Ada@Example.com ")

    call_command("normalize_contacts", "--batch-size", "2")

    out = capsys.readouterr().out
    ada.refresh_from_db()
    assert (ada.country, ada.phone, ada.first_name) == ("DE", "+49301234567", "Ada")
    assert (ada.job_function, ada.seniority) == ("engineering", "cxo")
    assert ada.original_values == {"country": "de", "phone": "030 1234567", "first_name": "ADA"}
    assert Contact.objects.get(pk=grace.pk).country == "xx"
    assert Contact.objects.get(pk=clash.pk).email == "Ada@Example.com "
    assert "3 contacts read, 2 changed" in out
    assert "country: 1 not normalisable" in out
    assert f"contact {clash.pk}: its e-mail normalises to ada@example.com" in out


@pytest.mark.django_db
def test_normalize_contacts_dry_run_writes_nothing(capsys):
    ada = ContactFactory(email="ada@example.com")
    Contact.objects.filter(pk=ada.pk).update(country="de")

    call_command("normalize_contacts", "--dry-run")

    assert "1 changed" in capsys.readouterr().out
    assert Contact.objects.get(pk=ada.pk).country == "de"
