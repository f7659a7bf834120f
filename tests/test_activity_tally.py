"""ActivityTally: kept exact by database triggers on every write path, and read by all-time counts.

The tally is checked against a recount of Activity after each kind of write. The compiler's
tally path (every all-time count of one kind, wherever it sits in a rule) is checked against the
activity stream, including a contact whose latest activity lies after the refresh's `now` and one
without any.
"""

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from django.db.models import Count

from contacts.models import Activity, ActivityTally, Contact
from segments.rules.compiler import matching_contacts
from segments.rules.explainer import explain
from tests.factories import ActivityFactory, ContactFactory

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def tally() -> dict[tuple[int, str], int]:
    return {(row.contact_id, row.kind): row.n for row in ActivityTally.objects.all()}


def recount() -> dict[tuple[int, str], int]:
    grouped = Activity.objects.order_by().values("contact_id", "kind").annotate(n=Count("pk"))
    return {(row["contact_id"], row["kind"]): row["n"] for row in grouped}


def visit(contact: Contact, days_ago: float, kind: str = "site_visit") -> Activity:
    return ActivityFactory(contact=contact, kind=kind, occurred_at=NOW - days_ago * DAY)


@pytest.fixture
def pair(db) -> tuple[Contact, Contact]:
    return ContactFactory(first_name="a"), ContactFactory(first_name="b")


def test_created_and_bulk_created_activities_are_tallied_per_contact_and_kind(pair):
    a, b = pair
    visit(a, 3)
    visit(a, 1)
    Activity.objects.bulk_create(
        [Activity(contact=b, kind="site_visit", occurred_at=NOW - k * DAY) for k in (5, 2, 9)]
        + [Activity(contact=a, kind="purchase", occurred_at=NOW)]
    )
    assert tally() == {(a.pk, "site_visit"): 2, (b.pk, "site_visit"): 3, (a.pk, "purchase"): 1}
    assert tally() == recount()


def test_a_deleted_activity_lowers_the_count_and_the_last_one_removes_the_row(pair):
    a, _ = pair
    older, latest = visit(a, 3), visit(a, 1)
    latest.delete()
    assert tally() == {(a.pk, "site_visit"): 1}
    older.delete()
    assert tally() == {}


def test_an_activity_moved_to_another_contact_or_kind_moves_in_the_tally(pair):
    a, b = pair
    moved, kept = visit(a, 3), visit(a, 2)
    Activity.objects.filter(pk=moved.pk).update(contact=b, kind="page_view")
    assert tally() == {(a.pk, "site_visit"): 1, (b.pk, "page_view"): 1}
    Activity.objects.filter(pk=kept.pk).update(kind="purchase")
    assert tally() == {(a.pk, "purchase"): 1, (b.pk, "page_view"): 1}
    Activity.objects.filter(pk__in=[moved.pk, kept.pk]).update(contact=a, kind="site_visit")
    assert tally() == {(a.pk, "site_visit"): 2}


def test_an_update_of_other_columns_leaves_the_tally_alone(pair):
    a, _ = pair
    visit(a, 3)
    before = tally()
    Activity.objects.update(topic="cloud", occurred_at=NOW - 9 * DAY)
    assert tally() == before


def test_deleting_a_contact_takes_its_tally_with_its_activities(pair):
    a, b = pair
    visit(a, 3)
    visit(a, 2, kind="purchase")
    visit(b, 1)
    a.delete()
    assert tally() == {(b.pk, "site_visit"): 1}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="statement-level triggers and TRUNCATE are PostgreSQL's")
def test_raw_sql_and_truncate_keep_the_tally_on_postgresql(pair):
    _, b = pair
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO contacts_activity (contact_id, kind, occurred_at, topic, product, url, campaign, created_at)"
            " SELECT %s, 'email_open', %s - g * interval '1 hour', '', '', '', '', now() FROM generate_series(1, 50) g",
            [b.pk, NOW],
        )
        assert tally() == {(b.pk, "email_open"): 50}
        cursor.execute("DELETE FROM contacts_activity WHERE occurred_at < %s", [NOW - timedelta(hours=40)])
        assert tally() == {(b.pk, "email_open"): 40}
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's inserts' deferred FK checks
        cursor.execute("TRUNCATE contacts_activity")
    assert tally() == {}


# The compiler's tally path: all-time counts of one kind.


@pytest.fixture
def visitors(pair) -> tuple[Contact, ...]:
    a, b = pair
    for days in (1, 2, 3, 4):
        visit(a, days)
    visit(a, -1)  # dated after the refresh's now: not counted, and a's count comes from Activity
    for days in (1, 2):
        visit(b, days)
    visit(b, 1, kind="purchase")
    c = ContactFactory(first_name="c")
    for days in (10, 20, 30, 40):
        visit(c, days)
    d = ContactFactory(first_name="d")  # never visited
    return a, b, c, d


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"op": "count_gte", "value": 2}, {"a", "b", "c"}),
        ({"op": "count_gte", "value": 4}, {"a", "c"}),
        ({"op": "count_gte", "value": 5}, set()),
        ({"op": "count_eq", "value": 4}, {"a", "c"}),
        ({"op": "count_eq", "value": 2}, {"b"}),
        ({"op": "count_eq", "value": 5}, set()),
        # Conditions that hold without activity: the tally gives those they fail for.
        ({"op": "count_lte", "value": 4}, {"a", "b", "c", "d"}),  # a's fifth visit is after now
        ({"op": "count_lte", "value": 3}, {"b", "d"}),
        ({"op": "count_eq", "value": 0}, {"d"}),
        ({"op": "count_gte", "value": 0}, {"a", "b", "c", "d"}),
        ({"op": "not_performed"}, {"d"}),
        ({"op": "performed"}, {"a", "b", "c"}),
    ],
)
def test_all_time_counts_read_from_the_tally_agree_with_the_activity_stream(visitors, rule, expected):
    rule = {"event": {"kind": "site_visit"}, **rule}
    contacts = matching_contacts(rule, now=NOW)
    assert "contacts_activitytally" in str(contacts.query)
    assert set(contacts.values_list("first_name", flat=True)) == expected
    for contact in visitors:
        assert explain(rule, contact, now=NOW).result == (contact.first_name in expected)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"not": {"event": {"kind": "site_visit"}, "op": "count_gte", "value": 4}}, {"b", "d"}),
        ({"not": {"event": {"kind": "site_visit"}, "op": "count_lte", "value": 3}}, {"a", "c"}),
        ({"any": [{"event": {"kind": "site_visit"}, "op": "count_eq", "value": 2}, {"in_segment": "x"}]}, {"b"}),
        ({"any": [{"event": {"kind": "site_visit"}, "op": "not_performed"}, {"in_segment": "x"}]}, {"d"}),
    ],
)
def test_tallied_counts_under_not_and_any_read_the_tally_too(visitors, rule, expected):
    contacts = matching_contacts(rule, now=NOW)
    assert "contacts_activitytally" in str(contacts.query)
    assert set(contacts.values_list("first_name", flat=True)) == expected
    for contact in visitors:
        assert explain(rule, contact, now=NOW).result == (contact.first_name in expected)


def test_a_refresh_at_an_earlier_time_counts_every_contact_from_the_activity_stream(visitors):
    rule = {"event": {"kind": "site_visit"}, "op": "count_gte", "value": 2}
    earlier = NOW - 15 * DAY  # every visitor has a visit after it: all are counted from Activity
    assert set(matching_contacts(rule, now=earlier).values_list("first_name", flat=True)) == {"c"}


def test_windowed_or_filtered_counts_do_not_read_the_tally(visitors):
    for rule in [
        {"event": {"kind": "site_visit"}, "op": "count_gte", "value": 2, "within_days": 30},
        {"event": {"kind": "site_visit", "topic": "cloud"}, "op": "count_gte", "value": 2},
        {"event": {"kind": "purchase"}, "op": "sum_gte", "value": 2},
    ]:
        assert "contacts_activitytally" not in str(matching_contacts(rule, now=NOW).query)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_the_tally_exact_without_deadlocks():
    """Each statement locks its tally rows in (contact, kind) order: writers of one statement per
    transaction (bulk ingest, a delete) never deadlock on them, whatever order they list contacts in."""
    people = ContactFactory.create_batch(12)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write(seed: int) -> None:
        chance = random.Random(seed)
        try:
            start.wait()
            for _ in range(15):
                ours = chance.sample(people, len(people))  # every writer touches every contact, in its own order
                with transaction.atomic():  # one INSERT statement, as a bulk ingest request
                    Activity.objects.bulk_create(
                        Activity(contact=person, kind=chance.choice(["site_visit", "page_view"]), occurred_at=NOW)
                        for person in ours
                    )
                doomed = list(Activity.objects.filter(contact__in=ours[:6]).values_list("pk", flat=True)[:8])
                with transaction.atomic():  # one DELETE statement
                    Activity.objects.filter(pk__in=doomed).delete()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert Activity.objects.exists()
    assert tally() == recount()
