"""The activity table by month on PostgreSQL (contacts/partitions.py, migration 0019); SQLite keeps one table."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from contacts.ingest import ingest_activities
from contacts.models import Activity, ActivityTally
from contacts.partitions import (
    DEFAULT_PARTITION,
    KEYS,
    MONTHS_BACK,
    add_months,
    ensure_partitions,
    existing_months,
    month_start,
    partition_name,
    partitioned,
)
from contacts.tasks import make_activity_partitions
from tests.factories import ActivityFactory, ContactFactory

on_postgresql = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql", reason="partitions are PostgreSQL's"
)
BEFORE, PARTITIONED = ("contacts", "0018_catch_up"), ("contacts", "0019_partition_activity")


def at(year: int, month: int, day: int = 15) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


def tallies() -> set[tuple]:
    return set(ActivityTally.objects.values_list("contact_id", "kind", "n"))


def partition_of(activity: Activity) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {Activity._meta.db_table} WHERE id = %s", [activity.pk])
        return cursor.fetchone()[0]


def migrate_to(target: tuple[str, str]) -> None:
    MigrationExecutor(connection).migrate([target])


def migrate_to_latest() -> None:
    """Back to every app's newest migration (the ones after PARTITIONED add columns the models read)."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def activity_rows() -> list[tuple]:
    return list(Activity.objects.order_by("pk").values_list())


def without_partitions(*months: date) -> None:
    """Given: these months have no partition, as on a table migrated empty (within the test's
    transaction; a migration test before may have made them)."""
    with connection.cursor() as cursor:
        for month in set(months) & existing_months(cursor):
            cursor.execute(f"ALTER TABLE {Activity._meta.db_table} DETACH PARTITION {partition_name(month)}")
            cursor.execute(f"DROP TABLE {partition_name(month)}")


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_the_migration_partitions_a_table_with_data_without_losing_a_row():
    # given: a plain table with activities over several months, some with external ids (the
    # contacts are made first: the Contact model of today has columns that 0018 has not)
    ana, ben = ContactFactory.create_batch(2)
    migrate_to(BEFORE)
    try:
        assert not partitioned()
        for month in (1, 2, 2, 7):
            ActivityFactory(contact=ana, occurred_at=at(2024, month), kind="email_click")
        ActivityFactory(contact=ben, occurred_at=at(1999, 3), external_id="legacy-1", value="12.50")
        ActivityFactory(contact=ben, occurred_at=at(2024, 7), external_id="evt-2", topic="cloud")
        rows, counts, last_id = activity_rows(), tallies(), Activity.objects.latest("pk").pk

        # when
        migrate_to(PARTITIONED)
    finally:
        migrate_to_latest()

    # then: every row as it was, in its month's partition (1999 in DEFAULT), tallies unchanged
    assert partitioned()
    assert activity_rows() == rows
    assert tallies() == counts
    by_time = {a.occurred_at: partition_of(a) for a in Activity.objects.all()}
    assert by_time[at(2024, 2)] == partition_name(date(2024, 2, 1))
    assert by_time[at(1999, 3)] == DEFAULT_PARTITION
    # ids go on from the highest, and a stored external id is still refused
    assert ActivityFactory(contact=ana).pk > last_id
    with pytest.raises(IntegrityError), transaction.atomic():
        ActivityFactory(contact=ana, occurred_at=at(2024, 9), external_id="legacy-1")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT external_id FROM {KEYS} ORDER BY 1")
        assert cursor.fetchall() == [("evt-2",), ("legacy-1",)]


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_migrating_back_makes_one_plain_table_with_the_same_rows():
    first = ActivityFactory(occurred_at=at(2024, 1), external_id="a")
    ActivityFactory(occurred_at=at(2025, 6), external_id="b")
    rows, counts = activity_rows(), tallies()

    migrate_to(BEFORE)
    try:
        assert not partitioned()
        assert activity_rows() == rows
        assert tallies() == counts
        with pytest.raises(IntegrityError), transaction.atomic():
            ActivityFactory(contact=first.contact, occurred_at=at(2024, 3), external_id="a")
    finally:
        migrate_to_latest()
    assert activity_rows() == rows


@pytest.mark.django_db
def test_an_external_id_is_stored_once_whatever_the_month():
    contact = ContactFactory(email="ana@example.com")
    row = {"email": "ana@example.com", "kind": "email_open", "external_id": "evt-1"}

    first = ingest_activities([{**row, "occurred_at": "2024-01-10T10:00:00Z"}])
    later = {**row, "occurred_at": "2025-03-10T10:00:00Z"}
    again = ingest_activities([later, {**later, "external_id": "evt-2"}])

    assert (first.created, first.duplicates) == (1, 0)
    assert (again.created, again.duplicates) == (1, 1)
    assert sorted(Activity.objects.values_list("external_id", flat=True)) == ["evt-1", "evt-2"]
    assert ActivityTally.objects.get(contact=contact, kind="email_open").n == 2
    with pytest.raises(IntegrityError), transaction.atomic():
        ActivityFactory(contact=contact, occurred_at=at(2023, 5), external_id="evt-2")


@pytest.mark.django_db
def test_a_repeated_external_id_in_one_batch_is_stored_once():
    ContactFactory(email="ana@example.com")
    row = {"email": "ana@example.com", "kind": "purchase", "external_id": "order-7", "value": "10.00"}

    result = ingest_activities(
        [{**row, "occurred_at": "2024-01-10T10:00:00Z"}, {**row, "occurred_at": "2024-06-10T10:00:00Z"}]
    )

    assert (result.created, result.duplicates) == (1, 1)
    assert Activity.objects.get().occurred_at == at(2024, 1, 10).replace(hour=10)


@pytest.mark.django_db
def test_a_deleted_or_changed_activity_frees_its_external_id():
    kept = ActivityFactory(occurred_at=at(2024, 1), external_id="evt-1")
    gone = ActivityFactory(occurred_at=at(2024, 2), external_id="evt-2")

    gone.delete()
    Activity.objects.filter(pk=kept.pk).update(external_id="evt-1b", occurred_at=at(2024, 8))
    ActivityFactory(occurred_at=at(2024, 3), external_id="evt-2")
    ActivityFactory(occurred_at=at(2024, 3), external_id="evt-1")

    assert sorted(Activity.objects.values_list("external_id", flat=True)) == ["evt-1", "evt-1b", "evt-2"]
    with pytest.raises(IntegrityError), transaction.atomic():
        ActivityFactory(occurred_at=at(2024, 4), external_id="evt-1b")


@on_postgresql
@pytest.mark.django_db
def test_moving_an_activity_to_another_month_keeps_the_tallies():
    # given: two activities in this month's partition (the migration made it and the next ones)
    this_month = month_start(datetime.now(UTC).date())
    next_month = add_months(this_month, 1)
    activity = ActivityFactory(occurred_at=at(this_month.year, this_month.month, 1), kind="page_view")
    other = ActivityFactory(contact=activity.contact, occurred_at=activity.occurred_at, kind="page_view")
    assert partition_of(activity) == partition_name(this_month)

    Activity.objects.filter(pk=activity.pk).update(occurred_at=at(next_month.year, next_month.month), kind="purchase")
    other.delete()

    assert partition_of(activity) == partition_name(next_month)
    assert tallies() == {(activity.contact_id, "purchase", 1)}


@on_postgresql
@pytest.mark.django_db
def test_the_schedule_makes_the_months_ahead_and_moves_their_rows_out_of_default():
    far = date.today().year + 2  # past the months the migration made
    activity = ActivityFactory(occurred_at=at(far, 2), external_id="future-1")
    counts = tallies()
    assert partition_of(activity) == DEFAULT_PARTITION

    made = ensure_partitions(today=date(far, 1, 20), months_ahead=2)

    assert made == [partition_name(date(far, m, 1)) for m in (1, 2, 3)]
    assert partition_of(activity) == partition_name(date(far, 2, 1))
    assert tallies() == counts
    assert ensure_partitions(today=date(far, 1, 20), months_ahead=2) == []
    with pytest.raises(IntegrityError), transaction.atomic():
        ActivityFactory(occurred_at=at(far, 3), external_id="future-1")


@on_postgresql
@pytest.mark.django_db
def test_the_schedule_gives_the_past_months_default_holds_their_partitions():
    # given: history written after a migration that found the table empty, so its months have none
    this_month = month_start(date.today())
    recent, older, too_old = (add_months(this_month, -n) for n in (2, 30, MONTHS_BACK + 1))
    without_partitions(recent, older)
    activities = [
        ActivityFactory(occurred_at=at(month.year, month.month), external_id=f"past-{n}")
        for n, month in enumerate((recent, older, too_old))
    ]
    rows, counts = activity_rows(), tallies()
    assert {partition_of(activity) for activity in activities} == {DEFAULT_PARTITION}

    made = ensure_partitions()

    assert made == [partition_name(older), partition_name(recent)]
    assert [partition_of(activity) for activity in activities] == [*made[::-1], DEFAULT_PARTITION]
    assert activity_rows() == rows
    assert tallies() == counts
    assert ensure_partitions() == []
    with pytest.raises(IntegrityError), transaction.atomic():
        ActivityFactory(occurred_at=at(older.year, older.month, 20), external_id="past-1")


@on_postgresql
@pytest.mark.django_db
def test_a_bulk_load_makes_the_months_it_is_about_to_write_first():
    this_month = month_start(date.today())
    since = add_months(this_month, -3)
    without_partitions(*(add_months(this_month, -n) for n in (3, 2, 1)))

    made = ensure_partitions(since=since + timedelta(days=9))

    assert made == [partition_name(add_months(this_month, -n)) for n in (3, 2, 1)]
    activity = ActivityFactory(occurred_at=at(since.year, since.month, 2))
    assert partition_of(activity) == partition_name(since)


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_the_schedule_makes_a_month_outside_any_transaction():
    # given: autocommit, as the daily task runs (the month's LOCK TABLE needs a transaction of its own)
    far = date.today().year + 3
    activity = ActivityFactory(occurred_at=at(far, 5))

    made = ensure_partitions(today=date(far, 5, 1), months_ahead=0)

    try:
        assert made == [partition_name(date(far, 5, 1))]
        assert partition_of(activity) == made[0]
    finally:  # the table outlives the test's flush
        Activity.objects.all().delete()
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {Activity._meta.db_table} DETACH PARTITION {made[0]}")
            cursor.execute(f"DROP TABLE {made[0]}")


@pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql", reason="checks SQLite's plain table"
)
@pytest.mark.django_db
def test_sqlite_keeps_one_plain_table():
    assert not partitioned()
    assert ensure_partitions() == []
    assert make_activity_partitions() == "none missing"


@on_postgresql
@pytest.mark.django_db
def test_the_daily_task_analyses_the_whole_table():
    ActivityFactory.create_batch(3, occurred_at=timezone.now())  # this month, which has its partition

    made = make_activity_partitions()

    assert made == "none missing"  # the migration made this month and the next ones
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [Activity._meta.db_table])
        assert cursor.fetchone()[0] == 3
