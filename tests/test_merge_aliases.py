"""After a merge the merged-away e-mail address or domain is an alias of the survivor: every upsert that
matches by e-mail or domain (API bulk upserts, file imports, enrichment, activities, deals) reaches the
survivor instead of creating the merged-away record again; undoing the merge takes the alias away."""

from itertools import count

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from contacts import imports, writes
from contacts.company_merging import merge_companies, undo_company_merge
from contacts.erasure import erase_contacts
from contacts.merging import merge_contacts, undo_merge
from contacts.models import Activity, Company, CompanyAlias, Contact, ContactAlias, Deal, ImportJob
from tests.factories import CompanyFactory, ContactFactory
from tests.segments_support import run_queued

pytestmark = pytest.mark.django_db
BATCHES = count()  # each measured batch its own addresses and domains


@pytest.fixture
def ada():
    """Two records of Ada merged: ada@acme.example (the loser) into ada.lovelace@acme.example."""
    survivor = ContactFactory(email="ada.lovelace@acme.example", first_name="Ada", job_title="CTO")
    loser = ContactFactory(email="ada@acme.example", first_name="Ada", job_title="Chief")
    merge = merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk, choices={"job_title": "survivor"})
    return survivor, merge


@pytest.fixture
def acme():
    """Two records of Acme merged: shop.acme.co.uk (the loser) into acme.co.uk."""
    survivor = CompanyFactory(name="Acme Ltd", domain="acme.co.uk", industry="")
    loser = CompanyFactory(name="Acme Shop", domain="shop.acme.co.uk", industry="retail")
    merge = merge_companies(survivor_id=survivor.pk, loser_id=loser.pk)
    return survivor, merge


@pytest.fixture(autouse=True)
def import_dir(settings, tmp_path):
    settings.IMPORT_DIR = tmp_path / "imports"


def _import(name: str, content: str, kind: str, django_capture_on_commit_callbacks) -> ImportJob:
    job = imports.start_import(SimpleUploadedFile(name, content.encode()), kind=kind, user=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert imports.queue_import(job)
    run_queued("contacts.tasks.run_import")
    job.refresh_from_db()
    return job


# -- contacts ---------------------------------------------------------------------------------------


def test_the_merge_keeps_the_loser_address_as_an_alias_of_the_survivor(ada):
    survivor, merge = ada

    assert ContactAlias.objects.values_list("email", "contact_id", "merge_id").get() == (
        "ada@acme.example", survivor.pk, merge.pk
    )  # fmt: skip


def test_an_api_upsert_of_the_merged_away_address_updates_the_survivor(ada, api_client):
    survivor, _merge = ada

    response = api_client("contacts:write").post(
        "/api/v1/contacts/bulk-upsert/", {"rows": [{"email": " ADA@acme.example", "city": "London"}]}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["updated"] == [{"index": 0, "id": survivor.pk, "key": "ada.lovelace@acme.example"}]
    assert response.json()["created"] == []
    assert Contact.objects.values_list("email", "city").get() == ("ada.lovelace@acme.example", "London")


def test_a_file_import_of_the_merged_away_address_updates_the_survivor(ada, django_capture_on_commit_callbacks):
    survivor, _merge = ada

    job = _import("c.csv", "email,city\nada@acme.example,Paris\n", "contacts", django_capture_on_commit_callbacks)

    assert (job.created, job.updated, job.rejected) == (0, 1, 0)
    assert Contact.objects.values_list("pk", "city").get() == (survivor.pk, "Paris")


def test_enrichment_activities_and_deals_naming_the_merged_away_address_reach_the_survivor(ada):
    survivor, _merge = ada

    enriched = writes.enrich_contacts([{"email": "ada@acme.example", "seniority": "cxo"}])
    click = {"email": "ada@acme.example", "kind": "email_click", "occurred_at": "2026-11-01T10:00:00Z"}
    activities = writes.ingest_activities([click | {"external_id": "a1"}])
    deals = writes.upsert_deals([{"external_id": "d1", "email": "ada@acme.example", "name": "Renewal", "amount": 10}])

    assert (enriched.failed, activities.failed, deals.failed) == ({}, {}, {})
    assert [row.id for row in enriched.updated] == [survivor.pk]
    assert Activity.objects.get(external_id="a1").contact_id == survivor.pk
    assert Deal.objects.get(external_id="d1").contact_id == survivor.pk


def test_a_batch_naming_the_survivor_by_both_addresses_refuses_the_second_row(ada):
    result = writes.upsert_contacts([{"email": "ada.lovelace@acme.example"}, {"email": "ada@acme.example"}])

    assert result.failed == {
        1: {
            "email": [
                "Same email as rows[0] (ada@acme.example has been an alias of ada.lovelace@acme.example since a "
                "merge); send a contact once."
            ]
        }
    }


def test_a_merge_keeping_the_loser_address_makes_the_survivor_old_one_the_alias(db):
    survivor = ContactFactory(email="old@acme.example")
    loser = ContactFactory(email="new@acme.example")

    merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk, choices={"email": "loser"})

    assert Contact.objects.values_list("pk", "email").get() == (survivor.pk, "new@acme.example")
    assert list(ContactAlias.objects.values_list("email", "contact_id")) == [("old@acme.example", survivor.pk)]
    assert writes.upsert_contacts([{"email": "old@acme.example"}]).updated[0].id == survivor.pk


def test_undo_takes_the_alias_away_and_the_address_is_the_restored_contact_again(ada):
    survivor, merge = ada

    undo_merge(merge.pk)

    assert not ContactAlias.objects.exists()
    loser = Contact.objects.get(email="ada@acme.example")
    assert writes.upsert_contacts([{"email": "ada@acme.example", "city": "Rome"}]).updated[0].id == loser.pk
    assert Contact.objects.get(pk=survivor.pk).city != "Rome"


def test_a_chain_of_merges_keeps_every_address_and_undoing_the_last_gives_them_back(ada):
    survivor, _first = ada
    third = ContactFactory(email="countess@lovelace.example")

    second = merge_contacts(survivor_id=third.pk, loser_id=survivor.pk)

    assert dict(ContactAlias.objects.values_list("email", "contact_id")) == {
        "ada@acme.example": third.pk,
        "ada.lovelace@acme.example": third.pk,
    }
    undo_merge(second.pk)
    assert dict(ContactAlias.objects.values_list("email", "contact_id")) == {"ada@acme.example": survivor.pk}


def test_an_address_taken_again_by_a_contact_of_its_own_is_that_contact_s(ada):
    again = ContactFactory(email="ada@acme.example")

    result = writes.upsert_contacts([{"email": "ada@acme.example", "city": "Oslo"}])

    assert result.updated[0].id == again.pk


def test_erasing_the_survivor_erases_its_aliases(ada):
    survivor, _merge = ada
    erase_contacts([survivor.pk])

    assert not ContactAlias.objects.exists()


def test_the_survivor_page_shows_its_aliases(ada, admin_client):
    survivor, merge = ada

    page = admin_client.get(reverse("admin:contacts_contact_change", args=[survivor.pk])).content.decode()

    merge_page = reverse("admin:contacts_contactmerge_change", args=[merge.pk])
    assert f'ada@acme.example (<a href="{merge_page}">merge {merge.pk}</a>)' in page
    assert admin_client.get(reverse("admin:contacts_contact_add")).status_code == 200
    assert f"ada@acme.example (now contact {survivor.pk})" in admin_client.get(merge_page).content.decode()


def _upsert_queries(n: int) -> int:
    """Queries of an upsert of n rows, each naming a contact by the address it was merged away from."""
    batch = next(BATCHES)
    emails = [f"p{i}-{batch}@example.com" for i in range(n)]
    for email in emails:
        merge_contacts(survivor_id=ContactFactory().pk, loser_id=ContactFactory(email=email).pk)
    rows = [{"email": e, "city": "Lima", "company_domain": f"c{i}-{batch}.example"} for i, e in enumerate(emails)]
    with CaptureQueriesContext(connection) as upserted:
        result = writes.upsert_contacts(rows)
    assert (len(result.created), len(result.updated)) == (0, n)
    return len(upserted.captured_queries)


def test_resolving_aliases_is_one_query_per_batch_whatever_its_size(db):
    _upsert_queries(2)  # fills the per-process caches

    assert _upsert_queries(2) == _upsert_queries(20)  # 20: one INSERT on SQLite too (999 parameters)


# -- companies --------------------------------------------------------------------------------------


def test_the_merge_keeps_the_loser_domain_as_an_alias_of_the_survivor(acme):
    survivor, merge = acme

    assert CompanyAlias.objects.values_list("domain", "company_id", "merge_id").get() == (
        "shop.acme.co.uk", survivor.pk, merge.pk
    )  # fmt: skip


def test_company_upserts_and_imports_of_the_merged_away_domain_update_the_survivor(
    acme, api_client, django_capture_on_commit_callbacks
):
    survivor, _merge = acme

    response = api_client("contacts:write").post(
        "/api/v1/companies/bulk-upsert/",
        {"rows": [{"domain": "https://www.shop.acme.co.uk/", "industry": "retail"}]},
        format="json",
    )
    job = _import("c.csv", "Website,Employees\nshop.acme.co.uk,300\n", "companies", django_capture_on_commit_callbacks)
    enriched = writes.enrich_companies([{"domain": "shop.acme.co.uk", "city": "Leeds"}])

    assert response.status_code == 200, response.content
    assert response.json()["updated"] == [{"index": 0, "id": survivor.pk, "key": "acme.co.uk"}]
    assert (job.created, job.updated, job.rejected) == (0, 1, 0)
    assert [row.id for row in enriched.updated] == [survivor.pk]
    assert Company.objects.values_list("pk", "industry", "employee_count").get() == (survivor.pk, "retail", 300)


def test_contacts_and_deals_naming_the_merged_away_domain_join_the_survivor(acme):
    survivor, _merge = acme

    contacts = writes.upsert_contacts([{"email": "new@shop.acme.co.uk", "company_domain": "shop.acme.co.uk"}])
    deals = writes.upsert_deals(
        [{"external_id": "d1", "company_domain": "shop.acme.co.uk", "name": "Shop", "amount": 5}]
    )

    assert (contacts.failed, deals.failed) == ({}, {})
    assert Contact.objects.get(email="new@shop.acme.co.uk").company_id == survivor.pk
    assert Deal.objects.get(external_id="d1").company_id == survivor.pk
    assert Company.objects.count() == 1


def test_company_undo_takes_the_alias_away(acme):
    _survivor, merge = acme

    undo_company_merge(merge.pk)

    assert not CompanyAlias.objects.exists()
    loser = Company.objects.get(domain="shop.acme.co.uk")
    assert writes.upsert_companies([{"domain": "shop.acme.co.uk"}]).updated[0].id == loser.pk


def test_a_company_merge_keeping_the_loser_domain_makes_the_survivor_old_one_the_alias(db):
    survivor, loser = CompanyFactory(domain="acme-old.example"), CompanyFactory(domain="acme.example")

    merge_companies(survivor_id=survivor.pk, loser_id=loser.pk, choices={"domain": "loser"})

    assert list(CompanyAlias.objects.values_list("domain", "company_id")) == [("acme-old.example", survivor.pk)]


def test_a_chain_of_company_merges_moves_the_aliases_and_undo_moves_them_back(acme):
    survivor, _first = acme
    group = CompanyFactory(domain="acme-group.example")

    second = merge_companies(survivor_id=group.pk, loser_id=survivor.pk)

    assert dict(CompanyAlias.objects.values_list("domain", "company_id")) == {
        "shop.acme.co.uk": group.pk,
        "acme.co.uk": group.pk,
    }
    undo_company_merge(second.pk)
    assert dict(CompanyAlias.objects.values_list("domain", "company_id")) == {"shop.acme.co.uk": survivor.pk}


def test_the_surviving_company_page_shows_its_aliases(acme, admin_client):
    survivor, merge = acme

    page = admin_client.get(reverse("admin:contacts_company_change", args=[survivor.pk])).content.decode()

    merge_page = reverse("admin:contacts_companymerge_change", args=[merge.pk])
    assert f'shop.acme.co.uk (<a href="{merge_page}">merge {merge.pk}</a>)' in page
    assert admin_client.get(reverse("admin:contacts_company_add")).status_code == 200
    assert f"shop.acme.co.uk (now company {survivor.pk})" in admin_client.get(merge_page).content.decode()


def _company_domain_queries(n: int) -> int:
    """Queries of a contact upsert of n rows, each naming its company by a domain merged away."""
    batch = next(BATCHES)
    for i in range(n):
        merge_companies(survivor_id=CompanyFactory().pk, loser_id=CompanyFactory(domain=f"gone{i}-{batch}.example").pk)
    rows = [{"email": f"q{i}-{batch}@example.com", "company_domain": f"gone{i}-{batch}.example"} for i in range(n)]
    with CaptureQueriesContext(connection) as upserted:
        result = writes.upsert_contacts(rows)
    assert len(result.created) == n
    return len(upserted.captured_queries)


def test_resolving_company_aliases_is_one_query_per_batch_whatever_its_size(db):
    _company_domain_queries(2)

    assert _company_domain_queries(2) == _company_domain_queries(20)
    assert Company.objects.filter(domain__startswith="gone").count() == 0


def test_a_phone_without_country_under_the_merged_away_address_reads_the_survivor_country(ada):
    survivor, _merge = ada
    Contact.objects.filter(pk=survivor.pk).update(country="DE")

    result = writes.upsert_contacts([{"email": "ada@acme.example", "phone": "030 1234567"}])

    assert result.failed == {}
    assert Contact.objects.values_list("pk", "phone").get() == (survivor.pk, "+49301234567")


def test_creating_a_contact_with_the_merged_away_address_is_a_conflict_naming_the_survivor(ada, api_client):
    survivor, _merge = ada

    response = api_client("contacts:write").post("/api/v1/contacts/", {"email": "ADA@acme.example"}, format="json")

    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("conflict", "email")
    assert f"alias of ada.lovelace@acme.example (contact {survivor.pk})" in error["message"]
    assert Contact.objects.count() == 1


def test_another_contact_cannot_take_the_alias_but_the_survivor_can(ada, api_client):
    survivor, _merge = ada
    other = ContactFactory(email="grace@acme.example")
    client = api_client("contacts:write")

    taken = client.patch(f"/api/v1/contacts/{other.pk}/", {"email": "ada@acme.example"}, format="json")
    own = client.patch(f"/api/v1/contacts/{survivor.pk}/", {"email": "ada@acme.example"}, format="json")

    assert taken.status_code == 409, taken.content
    assert own.status_code == 200, own.content
    assert Contact.objects.get(pk=other.pk).email == "grace@acme.example"
    assert Contact.objects.get(pk=survivor.pk).email == "ada@acme.example"


def test_creating_a_company_with_the_merged_away_domain_is_a_conflict_naming_the_survivor(acme, api_client):
    survivor, _merge = acme

    response = api_client("contacts:write").post(
        "/api/v1/companies/", {"name": "Acme Shop", "domain": "https://SHOP.acme.co.uk/"}, format="json"
    )

    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("conflict", "domain")
    assert f"alias of acme.co.uk (company {survivor.pk})" in error["message"]
    assert Company.objects.count() == 1


def test_an_activity_naming_the_survivor_by_id_and_by_its_alias_reaches_it(ada):
    survivor, _merge = ada
    other = ContactFactory(email="grace@acme.example")
    click = {"kind": "email_click", "occurred_at": "2026-11-01T10:00:00Z"}

    result = writes.ingest_activities(
        [
            click | {"external_id": "a1", "contact": survivor.pk, "email": "ADA@acme.example"},
            click | {"external_id": "a2", "contact": other.pk, "email": "ada@acme.example"},
        ]
    )

    assert Activity.objects.get(external_id="a1").contact_id == survivor.pk
    # the alias is the survivor's, not the other contact's: which of the two is meant cannot be told
    assert list(result.failed) == [1]
    assert "is not the e-mail of contact" in result.failed[1]["email"][0]
    assert not Activity.objects.filter(external_id="a2").exists()


def test_checking_ids_against_aliases_is_one_query_per_batch_whatever_its_size(ada):
    survivor, _merge = ada
    click = {"kind": "email_click", "occurred_at": "2026-11-01T10:00:00Z", "contact": survivor.pk}

    def queries(rows: int) -> int:
        batch = next(BATCHES)
        with CaptureQueriesContext(connection) as captured:
            result = writes.ingest_activities(
                [click | {"external_id": f"{batch}-{n}", "email": "ada@acme.example"} for n in range(rows)]
            )
        assert result.failed == {}
        return len(captured)

    assert queries(2) == queries(20)
