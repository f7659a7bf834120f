"""The full run's faster paths on PostgreSQL give the same rows, bit for bit, as the general statement.

- Pivoted vocabularies (contacts/metrics/vocabulary.py): topics and products summed in the
  per-contact aggregate and ranked within the row, against grouping by (contact, name).
- Parts (contacts/metrics/parallel.py): half of the contacts in each of two more sessions, then
  ranked together, against one statement in the caller's transaction.
"""

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction

from contacts.metrics import parallel
from contacts.metrics import vocabulary as pivot
from contacts.metrics.compute import compute_metrics
from contacts.models import Activity, ActivityKind, Contact, ContactMetrics
from tests.factories import ContactFactory

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the faster paths are PostgreSQL's")
# Mixed spellings of one name, ties, more than five names, names only on kinds that are not counted.
TOPICS = ["cloud-migration", "Cloud-Migration", "security", "SECURITY", "ai", "finops", "devops", "data", "zeta"]
PRODUCTS = ["vault", "Vault", "gateway", "edge", "insights", "atlas"]
KINDS = [
    ActivityKind.PAGE_VIEW,
    ActivityKind.PRICING_VIEW,
    ActivityKind.FEATURE_COMPARISON,
    ActivityKind.DEMO_REQUEST,
    ActivityKind.EMAIL_OPEN,
    ActivityKind.CONTENT_DOWNLOAD,
    ActivityKind.PURCHASE,
]


def make_activity_stream(contacts: int = 40, seed: int = 7) -> list[Contact]:
    """Contacts with varied reading: some with nothing, some with exact ties (same day, same kind)."""
    rng = random.Random(seed)
    people = [ContactFactory(lifecycle_stage=rng.choice(["lead", "customer"])) for _ in range(contacts)]
    rows = []
    for index, person in enumerate(people):
        if index % 10 == 0:
            continue  # no activity at all
        if index % 10 == 1:  # a tie: one view each of two topics and two products, at the same moment
            for topic, product in [("beta", "vault"), ("alpha", "edge")]:
                when = T - timedelta(days=3)
                rows.append(Activity(contact=person, kind="page_view", occurred_at=when, topic=topic, product=product))
            continue
        for _ in range(rng.randint(1, 25)):
            rows.append(
                Activity(
                    contact=person,
                    kind=rng.choice(KINDS),
                    occurred_at=T - timedelta(days=rng.uniform(0, 120)),
                    topic=rng.choice([*TOPICS, "", ""]),
                    product=rng.choice([*PRODUCTS, "", ""]),
                    value=rng.choice([0, 0, 120, 999.5]),
                )
            )
    Activity.objects.bulk_create(rows)
    return people


def stored_rows() -> dict[int, dict]:
    return {row["contact_id"]: row for row in ContactMetrics.objects.values()}


@postgres_only
@pytest.mark.django_db
@pytest.mark.parametrize("limit", [5, pivot.PIVOT_LIMIT])
def test_pivoted_topics_and_products_equal_the_grouped_ones(monkeypatch, limit):
    make_activity_stream()
    monkeypatch.setattr(pivot, "PIVOT_LIMIT", 0)  # every name list too long: the general statement
    compute_metrics(as_of=T)
    general = stored_rows()

    monkeypatch.setattr(pivot, "PIVOT_LIMIT", limit)  # 5: the 5 products pivot, not the 9 topics; 16: both
    compute_metrics(as_of=T)

    assert stored_rows() == general
    assert any(row["top_topics"] for row in general.values())
    assert any(row["strong_intent"] for row in general.values())


@postgres_only
@pytest.mark.django_db
def test_a_tie_is_broken_by_name():
    people = make_activity_stream(contacts=2)
    tied = people[1]

    compute_metrics(as_of=T)

    metrics = ContactMetrics.objects.get(contact=tied)
    assert metrics.topics == ["alpha", "beta"]
    assert metrics.products == ["edge", "vault"]
    assert metrics.topic_shares == {"alpha": 50, "beta": 50}
    assert metrics.top_topics == [{"topic": "alpha", "share": 50}, {"topic": "beta", "share": 50}]


@postgres_only
@pytest.mark.django_db
def test_discover_groups_spellings_under_their_lower_case_name_in_database_order():
    person = ContactFactory()
    for topic, product in [("Security", "Vault"), ("security", "vault"), ("AI", ""), ("", "edge")]:
        Activity.objects.create(contact=person, kind="page_view", occurred_at=T, topic=topic, product=product)
    Activity.objects.create(contact=person, kind="email_open", occurred_at=T, product="atlas")  # not a product kind
    Activity.objects.create(contact=person, kind="page_view", occurred_at=T + timedelta(days=1), topic="future")

    with connection.cursor() as cursor:
        found = pivot.discover(cursor, product_kinds="'page_view'", params={"as_of": T})

    assert found.topics == (pivot.Term("ai", ("AI",)), pivot.Term("security", ("Security", "security")))
    assert found.products == (pivot.Term("edge", ("edge",)), pivot.Term("vault", ("Vault", "vault")))


@postgres_only
@pytest.mark.django_db
def test_more_names_than_the_limit_are_not_pivoted(monkeypatch):
    person = ContactFactory()
    for topic in ["a", "b", "c"]:
        Activity.objects.create(contact=person, kind="page_view", occurred_at=T, topic=topic, product="vault")
    monkeypatch.setattr(pivot, "PIVOT_LIMIT", 2)

    with connection.cursor() as cursor:
        found = pivot.discover(cursor, product_kinds="'page_view'", params={"as_of": T})

    assert found.topics is None
    assert found.products == (pivot.Term("vault", ("vault",)),)


def stage_tables() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relname = ANY(%s)", [parallel.STAGES])
        return [name for (name,) in cursor.fetchall()]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_run_in_parts_stores_the_rows_of_the_single_statement():
    make_activity_stream(contacts=60)
    with transaction.atomic():  # inside a caller's transaction: one statement
        compute_metrics(as_of=T)
    single = stored_rows()

    summary = compute_metrics(as_of=T)  # owns its transaction: two more sessions, one half each

    assert "measure in parts" in summary.steps_ms
    assert stored_rows() == single
    assert len(single) == Contact.objects.count()
    assert stage_tables() == []


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_failing_part_leaves_the_stored_metrics_as_they_were(monkeypatch):
    make_activity_stream(contacts=12)
    compute_metrics(as_of=T)
    before = stored_rows()
    real_part_select = parallel.part_select

    def failing(d, model, params, vocabulary, part):
        if part[0] == 1:
            return "SELECT 1 / 0 AS contact_id"
        return real_part_select(d, model, params, vocabulary, part)

    monkeypatch.setattr(parallel, "part_select", failing)
    with pytest.raises(Exception, match="division by zero"):
        compute_metrics(as_of=T + timedelta(days=30))

    assert stored_rows() == before
    assert stage_tables() == []  # both sessions rolled back


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_staging_tables_left_by_a_crashed_run_are_replaced():
    make_activity_stream(contacts=6)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE UNLOGGED TABLE {parallel.STAGES[1]} (junk int)")

    compute_metrics(as_of=T)

    assert len(stored_rows()) == 6
    assert stage_tables() == []
    connections.close_all()


@postgres_only
@pytest.mark.django_db
def test_no_names_at_all_leaves_the_lists_to_the_general_statement():
    Activity.objects.create(contact=ContactFactory(), kind="page_view", occurred_at=T)

    with connection.cursor() as cursor:
        found = pivot.discover(cursor, product_kinds="'page_view'", params={"as_of": T})

    assert found == pivot.NONE
