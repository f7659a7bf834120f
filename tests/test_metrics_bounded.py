"""A large activity batch never makes the metrics cost more than a full run, nor fill the disk (issue 24).

The database's temp_file_limit is set low for these tests (on the test database, so the sessions a
full run opens get it too): a statement that writes more temporary files than that fails.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from contacts.metrics.compute import compute_metrics
from contacts.models import Activity, Contact, ContactMetrics, MetricsRun
from devtools import metrics_data
from tests.segments_support import run_queued

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="temp_file_limit is PostgreSQL's"),
]

CONTACTS = 20_000
TEMP_FILE_LIMIT = "16MB"
ACTIVITIES_BULK = "/api/v1/activities/bulk/"
RANKED = ["engagement_percentile", "engagement_level", "recently_disengaged", "r_score", "f_score", "v_score"]


@pytest.fixture
def low_temp_file_limit():
    database = connection.ops.quote_name(connection.settings_dict["NAME"])
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE {database} SET temp_file_limit = '{TEMP_FILE_LIMIT}'")
        cursor.execute(f"SET temp_file_limit = '{TEMP_FILE_LIMIT}'")
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE {database} RESET temp_file_limit")
        cursor.execute("RESET temp_file_limit")


@pytest.fixture
def stored_metrics():
    """20,000 contacts, 100,000 activities and everyone's metrics."""
    metrics_data.generate(CONTACTS, 100_000)
    as_of = timezone.now()
    compute_metrics(as_of=as_of)
    return as_of


def _ranked(contact_ids: list[int]) -> dict[int, tuple]:
    rows = ContactMetrics.objects.filter(contact_id__in=contact_ids).values_list("contact_id", *RANKED)
    return {row[0]: row[1:] for row in rows}


def test_a_9000_contact_activity_batch_finishes_its_metrics_within_the_temp_file_limit(
    stored_metrics, low_temp_file_limit, api_client
):
    # given: a batch of 9,000 activities for 9,000 different contacts (about 1 MB of JSON)
    ids = list(Contact.objects.order_by("?").values_list("pk", flat=True)[:9_000])
    when = (timezone.now() - timedelta(minutes=5)).isoformat()
    rows = [{"contact": pk, "kind": "demo_request", "occurred_at": when, "external_id": f"b-{pk}"} for pk in ids]
    response = api_client("activities:write").post(ACTIVITIES_BULK, {"rows": rows}, format="json")
    assert response.status_code == 200, response.content[:500]

    # when: a worker runs the catch-up task the batch queued (metrics first)
    results = run_queued("contacts.tasks.catch_up_task")

    # then: it finished, and every contact of the batch counts its demo request
    assert len(results) == 1
    run = MetricsRun.objects.latest("id")
    assert run.full  # 45% of the contacts were touched: the full run is the cheaper one
    counted = ContactMetrics.objects.filter(contact_id__in=ids, last_activity_at__gte=when)
    assert counted.count() == len(ids)
    assert Activity.objects.filter(external_id__startswith="b-").count() == len(ids)


def test_an_incremental_run_of_6000_touched_contacts_stays_within_the_limit_and_ranks_like_a_full_run(
    stored_metrics, low_temp_file_limit, settings
):
    settings.METRICS_INCREMENTAL_MAX_PERCENT = 100  # keep the incremental path, whatever the share
    as_of = stored_metrics
    ids = list(Contact.objects.order_by("?").values_list("pk", flat=True)[:6_000])
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO contacts_activity (contact_id, kind, occurred_at, topic, product, url, campaign, value,
                                              created_at)
            SELECT id, 'purchase', %s, '', '', '', '', 100 + id %% 7, now() FROM contacts_contact WHERE id = ANY(%s)""",
            [as_of - timedelta(hours=1), ids],
        )

    summary = compute_metrics(as_of=as_of, contact_ids=ids)
    incremental = _ranked(ids)
    compute_metrics(as_of=as_of)
    full = _ranked(ids)

    assert not summary.full
    assert len(incremental) == len(ids)
    assert incremental == full
