"""Bulk loads leave planner statistics behind: seeding always, bulk ingest when it grew a table enough."""

import pytest

from contacts.demo_data import seed_demo
from contacts.models import Activity, ActivityTally, Company, Contact
from contacts.table_statistics import analyze_if_stale
from tests.factories import ContactFactory
from tests.table_stats import forget_statistics, has_statistics

ACTIVITIES_BULK = "/api/v1/activities/bulk/"
CONTACTS_BULK = "/api/v1/contacts/bulk-upsert/"
COMPANIES_BULK = "/api/v1/companies/bulk-upsert/"


def test_seeding_analyses_every_table_it_loaded(db):
    forget_statistics(Company, Contact, Activity, ActivityTally)

    seed_demo(contacts=30, seed=7)

    assert all(has_statistics(model) for model in (Company, Contact, Activity, ActivityTally))


def activity_rows(contact: Contact, n: int, *, start: int = 0) -> list[dict]:
    return [
        {"external_id": f"evt-{i}", "contact": contact.pk, "kind": "page_view", "occurred_at": "2026-05-01T10:00:00Z"}
        for i in range(start, start + n)
    ]


def test_bulk_ingest_analyses_activities_once_it_wrote_more_than_autovacuum_lets_pass(
    api_client, django_capture_on_commit_callbacks
):
    writer = api_client("activities:write")
    contact = ContactFactory()
    forget_statistics(Activity, ActivityTally)

    with django_capture_on_commit_callbacks(execute=True):
        assert writer.post(ACTIVITIES_BULK, {"rows": activity_rows(contact, 50)}, format="json").json()["created"] == 50
    assert not has_statistics(Activity)  # 50 rows: within autovacuum's threshold

    with django_capture_on_commit_callbacks(execute=True):
        body = writer.post(ACTIVITIES_BULK, {"rows": activity_rows(contact, 51, start=50)}, format="json").json()
    assert body["created"] == 51
    assert has_statistics(Activity)
    assert has_statistics(ActivityTally)


@pytest.mark.parametrize(
    ("path", "model", "row"),
    [
        (CONTACTS_BULK, Contact, lambda i: {"email": f"p{i}@example.com"}),
        (COMPANIES_BULK, Company, lambda i: {"domain": f"c{i}.example"}),
    ],
)
def test_bulk_upserts_analyse_the_table_they_grew(api_client, django_capture_on_commit_callbacks, path, model, row):
    writer = api_client("contacts:write")
    forget_statistics(model)

    with django_capture_on_commit_callbacks(execute=True):
        response = writer.post(path, {"rows": [row(i) for i in range(60)]}, format="json")

    assert response.status_code == 200, response.json()
    assert has_statistics(model)


def test_a_write_under_a_tenth_of_an_analysed_table_keeps_its_statistics(db):
    ContactFactory.create_batch(3)
    forget_statistics(Contact)

    assert analyze_if_stale(Contact, written=50) == []
    assert analyze_if_stale(Contact, written=51) == [Contact]
    assert has_statistics(Contact)
