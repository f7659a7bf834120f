"""Activity retention (contacts/retention.py): months past ACTIVITY_RETENTION_MONTHS are dropped on
PostgreSQL once the metrics and analytics have read them; tallies, external ids, erasure, merges
and event conditions follow the activities kept."""

import logging
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from contacts.erasure import erase_contacts
from contacts.merging import merge_contacts
from contacts.models import Activity, ActivityTally, MetricsRun, ScoringModel
from contacts.partitions import (
    DEFAULT_PARTITION,
    KEYS,
    add_months,
    create_month,
    existing_months,
    month_start,
    partition_name,
)
from contacts.retention import apply_retention, retained_days
from contacts.tasks import drop_old_activity_months
from segments.analytics.periods import Period
from segments.analytics.updates import periods_for, update_analytics
from segments.editing import SegmentInvalid, save_segment
from segments.models import Segment
from segments.rules.compiler import matching_contacts
from segments.rules.explainer import explain
from tests.factories import ActivityFactory, ContactFactory, SegmentFactory, UserFactory

POSTGRESQL = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
on_postgresql = pytest.mark.skipif(not POSTGRESQL, reason="retention drops PostgreSQL's monthly partitions")
THIS_MONTH = month_start(datetime.now(UTC).date())
OLD = add_months(THIS_MONTH, -13)  # ends at the cut of 12 months: dropped
EDGE = add_months(THIS_MONTH, -12)  # the first month kept
RECENT = add_months(THIS_MONTH, -2)
CLICKED_TWICE = {"event": {"kind": "email_click"}, "op": "count_gte", "value": 2}


def at(month: date, day: int = 15) -> datetime:
    return datetime(month.year, month.month, day, 12, tzinfo=UTC)


def make_months(*months: date) -> None:
    """Partitions for past months (the test database's migration made only this month and ahead)."""
    with transaction.atomic(), connection.cursor() as cursor:
        have = existing_months(cursor)
        for month in months:
            if month not in have:
                create_month(cursor, month)


def stored_tallies() -> set[tuple]:
    return set(ActivityTally.objects.values_list("contact_id", "kind", "n"))


def counted_tallies() -> set[tuple]:
    grouped = Activity.objects.order_by().values("contact_id", "kind").annotate(n=Count("*"))
    return {(row["contact_id"], row["kind"], row["n"]) for row in grouped}


def stored_keys() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT external_id FROM {KEYS} ORDER BY 1")
        return [key for (key,) in cursor.fetchall()]


def tables_named(prefix: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relname LIKE %s AND relkind IN ('r', 'p')", [prefix + "%"])
        return {name for (name,) in cursor.fetchall()}


def rows_anywhere(contact_id: int) -> int:
    """Activity rows of the contact in every table made as a partition of the activity table,
    attached or not (contacts_activity_p..., contacts_activity_default)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'contact_id'
            WHERE c.relname LIKE 'contacts\\_activity\\_%%' AND c.relkind = 'r'"""
        )
        total = 0
        for (table,) in cursor.fetchall():
            cursor.execute(f"SELECT count(*) FROM {table} WHERE contact_id = %s", [contact_id])
            total += cursor.fetchone()[0]
        return total


def months_past_cut() -> list[str]:
    """The month partitions past 12 months: OLD, and any empty ones other tests left behind (a
    migration test going back and forth makes months from its oldest row; a flush keeps tables)."""
    with connection.cursor() as cursor:
        months = sorted(month for month in existing_months(cursor) if month <= OLD)
    return [partition_name(month) for month in months]


def read_by_everything() -> None:
    """The watermarks the retention waits for: a full metrics run as of now, and the analytics update."""
    MetricsRun.objects.create(as_of=timezone.now(), full=True)
    update_analytics()


@pytest.fixture
def history():
    """Ana and Ben with activities in a month past 12 months, the first month kept, a recent one,
    DEFAULT (2001, older than any partition) and the far future (DEFAULT too)."""
    make_months(OLD, EDGE, RECENT)
    ana, ben = ContactFactory(email="ana@example.com"), ContactFactory(email="ben@example.com")
    for n in (1, 2):
        ActivityFactory(contact=ana, kind="email_click", occurred_at=at(OLD, n), external_id=f"old-{n}")
    ActivityFactory(contact=ana, kind="email_click", occurred_at=at(EDGE, 1), external_id="edge-1")
    ActivityFactory(contact=ana, kind="page_view", occurred_at=at(RECENT))
    ActivityFactory(contact=ben, kind="purchase", occurred_at=at(date(2001, 3, 1)), external_id="legacy", value="9")
    ActivityFactory(contact=ben, kind="email_click", occurred_at=at(OLD, 20))
    ActivityFactory(contact=ben, kind="email_click", occurred_at=at(add_months(THIS_MONTH, 30)))
    return ana, ben


@on_postgresql
@pytest.mark.django_db
def test_months_past_retention_go_with_their_tallies_and_keys_once_read(history):
    # given
    ana, ben = history
    kept = list(Activity.objects.filter(occurred_at__gte=at(EDGE, 1)).order_by("pk").values())
    past = months_past_cut()
    read_by_everything()

    # when
    result = apply_retention(months=12)

    # then: the old month is gone from the table and the database, DEFAULT lost its 2001 row
    assert partition_name(OLD) in past
    assert (result.dropped, result.rows, result.skipped) == (past, 4, {})
    assert list(Activity.objects.order_by("pk").values()) == kept
    assert partition_name(OLD) not in tables_named("contacts_activity_p")
    assert {partition_name(EDGE), partition_name(RECENT), DEFAULT_PARTITION} <= tables_named("contacts_activity_")
    # the tally counts the activities kept; the freed external ids can be stored again
    assert (
        stored_tallies()
        == counted_tallies()
        == {
            (ana.pk, "email_click", 1),
            (ana.pk, "page_view", 1),
            (ben.pk, "email_click", 1),
        }
    )
    assert stored_keys() == ["edge-1"]

    # and a second run changes nothing
    again = apply_retention(months=12)
    assert (again.dropped, again.rows, again.skipped) == ([], 0, {})
    assert list(Activity.objects.order_by("pk").values()) == kept


@on_postgresql
@pytest.mark.django_db
def test_an_all_time_count_agrees_on_every_path_after_retention(history):
    ana, _ = history
    now = timezone.now()
    assert list(matching_contacts(CLICKED_TWICE, now=now)) == [ana]  # three clicks, the tally says
    read_by_everything()

    apply_retention(months=12)

    # the tally (whole segment), the probe of one contact's activities and the explainer agree
    assert not matching_contacts(CLICKED_TWICE, now=now).exists()
    assert not matching_contacts(CLICKED_TWICE, now=now, contact_ids=[ana.pk]).exists()
    assert explain(CLICKED_TWICE, ana, now=now).result is False


@on_postgresql
@pytest.mark.django_db
def test_a_late_activity_for_a_dropped_month_is_stored_then_dropped_at_the_next_run(history):
    ana, _ = history
    read_by_everything()
    apply_retention(months=12)

    late = ActivityFactory(contact=ana, kind="email_click", occurred_at=at(OLD, 3), external_id="old-1")
    assert Activity.objects.filter(pk=late.pk).exists()  # its month is gone: DEFAULT holds it
    skipped = apply_retention(months=12)
    assert DEFAULT_PARTITION in skipped.skipped  # the analytics have not read it yet
    update_analytics()
    result = apply_retention(months=12)

    assert (result.dropped, result.rows) == ([], 1)
    assert not Activity.objects.filter(pk=late.pk).exists()
    assert stored_tallies() == counted_tallies()
    assert "old-1" not in stored_keys()


@on_postgresql
@pytest.mark.django_db
def test_nothing_goes_before_a_full_metrics_run_and_the_log_says_why(history, caplog):
    update_analytics()
    MetricsRun.objects.create(as_of=timezone.now(), full=False)  # touched contacts only
    before = list(Activity.objects.order_by("pk").values())

    with caplog.at_level(logging.WARNING, logger="contacts.retention"):
        result = apply_retention(months=12)

    assert (result.dropped, result.rows) == ([], 0)
    assert result.skipped == dict.fromkeys([*months_past_cut(), DEFAULT_PARTITION], "no full metrics run yet")
    assert f"{partition_name(OLD)} kept (3 activities): no full metrics run yet" in caplog.text
    assert list(Activity.objects.order_by("pk").values()) == before
    assert stored_tallies() == counted_tallies()


@on_postgresql
@pytest.mark.django_db
def test_nothing_goes_before_the_analytics_rolled_it_up(history):
    MetricsRun.objects.create(as_of=timezone.now(), full=True)

    never = apply_retention(months=12)
    update_analytics()
    newer = ActivityFactory(contact=history[1], kind="page_view", occurred_at=at(OLD, 25))
    behind = apply_retention(months=12)

    assert never.skipped[partition_name(OLD)] == "the analytics have never been computed"
    hour = newer.occurred_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    says = f"the analytics have not yet read activities changed at {hour:%Y-%m-%d %H}:00 UTC"
    assert behind.skipped[partition_name(OLD)] == says
    # the old month waits for the analytics; DEFAULT's 2001 row, read by both runs, went
    assert Activity.objects.filter(occurred_at__lt=at(EDGE, 1)).count() == 4
    assert behind.rows == 1
    assert DEFAULT_PARTITION not in behind.skipped


@on_postgresql
@pytest.mark.django_db
def test_a_rule_or_a_window_of_the_metrics_or_hygiene_reading_past_retention_holds_every_month(settings, history):
    read_by_everything()
    long_window = {"event": {"kind": "email_click"}, "op": "performed", "within_days": 400}
    SegmentFactory(slug="clickers", rule={"all": [long_window]})

    by_rule = apply_retention(months=12)
    Segment.objects.filter(slug="clickers").update(rule={"event": {"kind": "email_click"}, "op": "performed"})
    ScoringModel.objects.update(is_active=False)
    ScoringModel.objects.create(name="All time", is_active=True, rfv_frequency_window_days=0)
    by_model = apply_retention(months=12)
    ScoringModel.objects.filter(name="All time").update(rfv_frequency_window_days=365)
    settings.HYGIENE_INACTIVE_DAYS = 400
    by_hygiene = apply_retention(months=12)

    assert by_rule.skipped[partition_name(OLD)] == (
        "segment rules read further back than 12 months keep: clickers (all[0].within_days)"
    )
    assert by_model.skipped[partition_name(OLD)] == (
        "the active scoring model counts frequency over all time (rfv_frequency_window_days 0)"
    )
    assert by_hygiene.skipped[partition_name(OLD)] == (
        "list hygiene's HYGIENE_INACTIVE_DAYS is 400 days, and 12 months keep as few as 365"
    )
    assert by_rule.dropped == by_model.dropped == by_hygiene.dropped == []


@on_postgresql
@pytest.mark.django_db
def test_an_erased_contact_leaves_no_activity_row_anywhere(history):
    ana, ben = history
    read_by_everything()
    apply_retention(months=12)

    erase_contacts([ana.pk])

    assert rows_anywhere(ana.pk) == 0
    assert rows_anywhere(ben.pk) == 1  # the other contact keeps what retention kept
    assert not ActivityTally.objects.filter(contact_id=ana.pk).exists()
    assert stored_keys() == []


@on_postgresql
@pytest.mark.django_db
def test_a_merge_after_retention_moves_the_kept_activities_and_their_tallies(history):
    ana, ben = history
    read_by_everything()
    apply_retention(months=12)

    merge_contacts(survivor_id=ana.pk, loser_id=ben.pk, by=UserFactory())

    assert rows_anywhere(ben.pk) == 0
    assert stored_tallies() == counted_tallies() == {(ana.pk, "email_click", 2), (ana.pk, "page_view", 1)}


@on_postgresql
@pytest.mark.django_db
def test_the_daily_task_reads_the_setting(settings, history):
    read_by_everything()
    past = months_past_cut()

    off = drop_old_activity_months()
    settings.ACTIVITY_RETENTION_MONTHS = 12
    on = drop_old_activity_months()

    assert off == "retention off (ACTIVITY_RETENTION_MONTHS is 0): every activity is kept"
    assert on == f"kept 12 months: dropped {', '.join(past)} (4 activities)"


@pytest.mark.skipif(POSTGRESQL, reason="checks SQLite's refusal")
@pytest.mark.django_db
def test_sqlite_drops_nothing_and_says_so(settings):
    settings.ACTIVITY_RETENTION_MONTHS = 12  # start-up refuses it on SQLite; the task still says why
    ActivityFactory(occurred_at=datetime(2001, 1, 1, tzinfo=UTC))

    assert drop_old_activity_months() == (
        "retention needs PostgreSQL's monthly partitions of the activity table: nothing dropped"
    )
    assert Activity.objects.count() == 1


def test_start_up_refuses_retention_on_sqlite():
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "1", "DATABASE_URL": "sqlite:///var/x.sqlite3"}
    code = "import crmseg_site.settings"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "ACTIVITY_RETENTION_MONTHS": "12"},
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        check=False,
    )

    assert result.returncode != 0
    assert "ACTIVITY_RETENTION_MONTHS needs PostgreSQL" in result.stderr.splitlines()[-1]


def test_the_months_kept_cover_at_least_these_days():
    assert [retained_days(n) for n in (1, 2, 3, 12, 13, 24)] == [28, 59, 89, 365, 393, 730]


@pytest.mark.django_db
def test_saving_a_rule_that_reads_past_retention_is_refused_naming_the_field(settings):
    settings.ACTIVITY_RETENTION_MONTHS = 12
    rule = {
        "all": [
            {"field": "lifecycle_stage", "op": "eq", "value": "mql"},
            {"not": {"event": {"kind": "site_visit"}, "op": "performed", "within_days": 400}},
        ]
    }

    with pytest.raises(SegmentInvalid) as refused:
        save_segment(Segment(name="Quiet MQLs", slug="quiet-mqls", rule=rule))
    rule["all"][1]["not"]["within_days"] = 365
    saved = save_segment(Segment(name="Quiet MQLs", slug="quiet-mqls", rule=rule))

    (error,) = refused.value.rule_errors
    assert error.path == "all[1].not.within_days"
    assert "ACTIVITY_RETENTION_MONTHS=12 keeps as few as 365 days, so use at most 365" in error.message
    assert saved.pk is not None


@pytest.mark.django_db
def test_without_retention_a_long_window_is_accepted():
    rule = {"event": {"kind": "site_visit"}, "op": "performed", "within_days": 4000}

    assert save_segment(Segment(name="Ever visited", slug="ever", rule=rule)).pk is not None


def test_the_analytics_never_recompute_a_period_that_begins_before_the_months_kept(settings):
    settings.TIME_ZONE = "UTC"
    first_kept = add_months(THIS_MONTH, -12)
    days = {first_kept - timedelta(days=1), first_kept + timedelta(days=20)}

    everything = [p for periods in periods_for(days).values() for p in periods]
    settings.ACTIVITY_RETENTION_MONTHS = 12
    kept = [p for periods in periods_for(days).values() for p in periods]

    assert Period(first_kept - timedelta(days=1), first_kept - timedelta(days=1), "day") in everything
    assert min(p.first for p in kept) == first_kept
    assert Period(first_kept, add_months(first_kept, 1) - timedelta(days=1), "month") in kept
    assert {p for p in everything if p.first >= first_kept} == set(kept)


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_the_nightly_run_drops_a_month_in_autocommit_as_the_worker_runs_it(settings):
    # given: committed rows in a month past 12 months and in this month, read by metrics and analytics
    make_months(OLD)
    ana = ContactFactory()
    gone = ActivityFactory(contact=ana, kind="email_open", occurred_at=at(OLD), external_id="autocommit-old")
    kept = ActivityFactory(contact=ana, kind="email_open", occurred_at=timezone.now())
    read_by_everything()
    settings.ACTIVITY_RETENTION_MONTHS = 12

    # when: the task runs outside any transaction of the test's (each month in its own)
    message = drop_old_activity_months()

    # then: the month's table is gone for good (nothing rolls it back), with its tally and key
    assert partition_name(OLD) in message
    assert partition_name(OLD) not in tables_named("contacts_activity_p")
    assert not Activity.objects.filter(pk=gone.pk).exists()
    assert list(Activity.objects.values_list("pk", flat=True)) == [kept.pk]
    assert stored_tallies() == {(ana.pk, "email_open", 1)}
    assert "autocommit-old" not in stored_keys()


@pytest.mark.django_db
def test_checking_a_rule_through_the_api_tells_of_a_window_past_retention(settings, api_client):
    settings.ACTIVITY_RETENTION_MONTHS = 3
    rule = {"any": [{"event": {"kind": "email_open"}, "op": "count_gte", "value": 2, "within_days": 120}]}

    response = api_client("segments:read", "contacts:read").post(
        "/api/v1/segments/validate/", {"rule": rule}, format="json"
    )

    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert response.json()["valid"] is False
    assert (error["path"], error["code"]) == ("any[0].within_days", "past_retention")
    assert "keeps as few as 89 days" in error["message"]
