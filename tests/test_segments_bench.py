import json
import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ

from contacts.models import Contact
from devtools.segment_bench import hand_written_refresh
from segments.editing import save_segment
from segments.history import DESCRIBE_TASK
from segments.models import Segment, SegmentDay
from segments.refresh import refresh_segment
from segments.targets import target_contacts
from tests.factories import ContactFactory
from tests.segments_support import history, member_ids

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="bench_segments measures PostgreSQL")


# Committing for real, as the command does when run: each refresh's detail task is queued after its commit.
@pytest.mark.django_db(transaction=True)
def test_the_small_benchmark_runs_and_reports_every_figure(tmp_path, caplog):
    output, out = tmp_path / "bench.json", StringIO()
    queue_log_level = logging.getLogger("django-q").level

    call_command("bench_segments", "--small", "--output", str(output), stdout=out)

    report = json.loads(output.read_text())
    phases = report["phases"]
    assert report["segments"] == 30
    assert phases["cold_build"]["rows_written"] > 0
    assert phases["churn_0"]["rows_written"] == 0
    assert phases["churn_0"]["history_rows_added"] == 0
    assert phases["repeat_0"]["now"] == phases["churn_0"]["now"]
    assert phases["repeat_0"]["rows_written"] == phases["repeat_0"]["history_rows_added"] == 0
    assert phases["churn_1"]["history_rows_added"] == phases["churn_1"]["changes"] > 0
    assert set(report["baseline"]["segments"]) == set(phases["cold_build"]["segments"])
    for row in report["baseline"]["segments"].values():  # both hand-written sides ran and were timed
        assert min(row["ours_ms"], row["baseline_ms"], row["refresh_baseline_ms"]) > 0
    assert report["baseline"]["max_refresh_ratio"] >= report["baseline"]["median_refresh_ratio"] > 0
    assert report["naive_loop"]["extrapolated_seconds"] > 0
    assert report["refresh_contacts_one_contact"]["segments"] == 50
    assert report["refresh_contacts_one_contact"]["p95_ms"] >= report["refresh_contacts_one_contact"]["p50_ms"]
    details = report["refresh_contacts_one_contact"]["details"]  # the tasks the refreshes queued, run and timed
    assert details["tasks"] > 0
    assert details["p95_ms"] >= details["p50_ms"] > 0
    assert not [task for task in OrmQ.objects.all() if task.task["func"] == DESCRIBE_TASK]
    assert report["preview_count"]["max_ms"] > 0
    assert 0 < report["peak_rss_mb"] < 2000
    assert "bench-score-20" in out.getvalue()
    # django-q's "Enqueued" lines stay out of the figures, and its logger is left as it was.
    assert not [record for record in caplog.records if record.name == "django-q" and record.levelno < logging.WARNING]
    assert logging.getLogger("django-q").level == queue_log_level
    with connection.cursor() as cursor:  # activities stored in arrival order over 540 days, up to 6 hours late
        cursor.execute(
            """SELECT max(occurred_at) - min(occurred_at),
                count(*) FILTER (WHERE occurred_at < before - interval '6 hours')
            FROM (SELECT occurred_at, lag(occurred_at) OVER (ORDER BY id) AS before FROM contacts_activity) AS stream"""
        )
        span, out_of_order = cursor.fetchone()
    assert span.days >= 539
    assert out_of_order == 0
    with connection.cursor() as cursor:  # the tally the triggers kept through the set-based generation and churn
        cursor.execute(
            """SELECT count(*) FROM (SELECT contact_id, kind, count(*) AS n FROM contacts_activity GROUP BY 1, 2) AS a
            FULL JOIN contacts_activitytally AS t USING (contact_id, kind) WHERE a.n IS DISTINCT FROM t.n"""
        )
        assert cursor.fetchone()[0] == 0


def test_it_refuses_a_database_that_holds_data(db):
    ContactFactory()

    with pytest.raises(CommandError, match="has contacts or segments"):
        call_command("bench_segments", "--small")


def test_only_refuses_an_unknown_phase(db):
    with pytest.raises(CommandError, match="choose from baseline, preview"):
        call_command("bench_segments", "--only", "baseline,nope")


def test_only_needs_a_bench_database_with_data(db):
    with pytest.raises(CommandError, match="--only needs a bench database"):
        call_command("bench_segments", "--only", "preview")


def test_the_hand_written_refresh_does_the_work_of_a_refresh(db):
    # given a segment built by our refresh, then one contact rising into its rule and one falling out
    stays, leaves, joins = ContactFactory.create_batch(3, lead_score=10)
    Contact.objects.filter(pk__in=[stays.pk, leaves.pk]).update(lead_score=80)
    hot = {"field": "lead_score", "op": "gte", "value": 50}
    segment = save_segment(Segment(name="Hot", slug="hot", kind="dynamic", rule=hot))
    assert refresh_segment(segment.pk).size == 2
    Contact.objects.filter(pk=leaves.pk).update(lead_score=10)
    Contact.objects.filter(pk=joins.pk).update(lead_score=90)
    target_sql, params = target_contacts(segment, now=timezone.now()).order_by().values("pk").query.sql_with_params()

    # when the benchmark's hand-written refresh runs
    hand_written_refresh(segment, target_sql, params)

    # then it wrote what ours would have: members, history, the figures and the day's rollup
    segment.refresh_from_db()
    assert member_ids(segment) == {stays.pk, joins.pk}
    assert set(history(segment)[2:]) == {(joins.pk, "join", "rule"), (leaves.pk, "leave", "rule")}
    assert (segment.size, segment.last_refresh_added, segment.last_refresh_removed) == (2, 1, 1)
    day = SegmentDay.objects.get(segment=segment)
    assert (day.joins, day.leaves, day.size) == (3, 1, 2)
