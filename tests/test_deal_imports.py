"""Deal imports through the file import machinery (contacts.imports, contacts.ingest.upsert_deals):
mapping from a deal file's own column names, per-cell errors, upsert by external id, idempotent."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contacts import writes
from contacts.models import Deal, ImportStatus
from tests.factories import CompanyFactory, ContactFactory
from tests.test_imports import error_rows, import_dir, run, upload  # noqa: F401 - import_dir is a fixture

pytestmark = pytest.mark.django_db

DEALS = (
    "Deal ID,Deal name,Contact email,Company,Amount,Stage,Created,Close date\n"
    "D-1,Platform renewal,ada@example.com,acme.example,12000,won,2026-01-05,05.02.2026\n"
    'D-2,Pilot,,acme.example,"2,5",open,2026-03-01,\n'
    "D-3,Ghost,nobody@example.com,,100,open,,\n"
    "D-4,Bad amount,ada@example.com,,lots,open,,\n"
    "D-5,Closed but open,ada@example.com,,10,open,,2026-02-01\n"
    "D-6,Wrong stage,ada@example.com,,10,maybe,,\n"
    "D-1,Twice,ada@example.com,,10,open,,\n"
    "D-8,No amount,ada@example.com,,,open,,\n"
    "D-9,Bad date,ada@example.com,,10,open,31.02.2026,\n"
)


@pytest.fixture
def crm(db):
    return ContactFactory(email="ada@example.com"), CompanyFactory(domain="acme.example")


def test_a_deal_file_maps_itself_and_stores_the_good_rows(crm, django_capture_on_commit_callbacks):
    ada, acme = crm
    job = upload("deals.csv", DEALS, kind="deals")

    assert job.mapping == {
        "Deal ID": "external_id", "Deal name": "name", "Contact email": "email", "Company": "company_domain",
        "Amount": "amount", "Stage": "stage", "Created": "created_at", "Close date": "closed_at",
    }  # fmt: skip
    job = run(job, django_capture_on_commit_callbacks)

    assert job.status == ImportStatus.DONE
    assert (job.created, job.updated, job.unchanged, job.rejected) == (2, 0, 0, 7)
    won = Deal.objects.get(external_id="D-1")
    assert (won.contact, won.company, won.amount, won.stage) == (ada, acme, Decimal("12000.00"), "won")
    assert won.closed_at == datetime(2026, 2, 5, tzinfo=UTC)
    assert Deal.objects.get(external_id="D-2").amount == Decimal("2.50")
    errors = {(e["row"], e["column"]): e["message"] for e in error_rows(job)}
    assert errors[("4", "Contact email")] == "No contact with e-mail 'nobody@example.com'; import the contact first."
    assert errors[("5", "Amount")] == "'lots' is not a number."
    assert errors[("6", "Close date")].startswith("An open deal has no close date")
    assert errors[("7", "Stage")] == "Value 'maybe' is not a valid choice."
    assert errors[("8", "Deal ID")] == "The same external_id as an earlier row of this file; each record once, please."
    assert errors[("9", "Amount")] == "A new deal needs it."
    assert errors[("10", "Created")].startswith("'31.02.2026' is not a date")


def test_importing_the_same_file_again_changes_nothing(crm, django_capture_on_commit_callbacks):
    run(upload("deals.csv", DEALS, kind="deals"), django_capture_on_commit_callbacks)

    again = run(upload("deals.csv", DEALS, kind="deals"), django_capture_on_commit_callbacks)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert Deal.objects.count() == 2


def test_an_update_writes_only_the_given_columns_and_reopening_clears_the_close_date(
    crm, django_capture_on_commit_callbacks
):
    run(upload("deals.csv", DEALS, kind="deals"), django_capture_on_commit_callbacks)

    job = run(
        upload("stages.csv", "Deal ID,Stage\nD-1,open\nD-2,lost\n", kind="deals"), django_capture_on_commit_callbacks
    )

    assert (job.created, job.updated, job.rejected) == (0, 2, 0)
    reopened = Deal.objects.get(external_id="D-1")
    assert (reopened.stage, reopened.closed_at, reopened.name) == ("open", None, "Platform renewal")
    assert Deal.objects.get(external_id="D-2").stage == "lost"


def test_the_bulk_path_refuses_unknown_fields_and_announces_the_contacts(crm, django_capture_on_commit_callbacks):
    ada, _acme = crm

    result = writes.upsert_deals(
        [
            {"external_id": "X-1", "name": "API deal", "amount": 5, "email": "Ada@Example.com"},
            {"external_id": "X-2", "name": "Odd", "amount": 5, "email": "ada@example.com", "colour": "red"},
            {"name": "No id", "amount": 5, "email": "ada@example.com"},
        ]
    )

    assert [r.key for r in result.created] == ["X-1"]
    assert result.failed[1] == {"colour": ["Unknown field 'colour'."]}
    assert "external_id" in result.failed[2]
    assert result.changed_contact_ids == {ada.pk}
