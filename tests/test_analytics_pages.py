"""The analytics pages, CSV and API: what comes back, bad input named, and constant query counts."""

import csv
import io
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from segments.analytics import rollup
from segments.analytics.overlap import overlap
from segments.analytics.periods import parse_period
from segments.models import Membership, RuleVersion
from segments.watchdog import record_failure
from tests.analytics_support import build_world
from tests.factories import ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db

Q3 = parse_period("2026Q3")


def stored(*extra_segments):
    world = build_world()
    ids = [world.segment.pk, *(s.pk for s in extra_segments)]
    rollup.compute_and_store([Q3], segment_ids=ids)
    return world


def more_segments(n: int) -> list:
    return [SegmentFactory(kind="static", rule=None) for _ in range(n)]


def test_the_comparison_page_lists_segments_beside_the_database(client, ops_user):
    world = stored()
    client.force_login(ops_user)
    response = client.get(reverse("segments-analytics"), {"period": "2026Q3"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-segment="analysed"' in html
    assert "Whole database" in html
    assert "80.0%" in html  # Analysed's engagement: 4 of 5 members
    assert reverse("segments-analytics-detail", args=[world.segment.pk]) in html
    assert html.count("<svg") >= 3


@pytest.mark.parametrize("extra", [0, 6])
def test_the_comparison_page_reads_a_constant_number_of_queries(client, ops_user, django_assert_num_queries, extra):
    stored(*more_segments(extra))
    client.force_login(ops_user)
    client.get(reverse("segments-analytics"), {"period": "2026Q3"})  # the session is read once
    with django_assert_num_queries(7):  # session, user, segments, stats, stages, changes, responses
        assert client.get(reverse("segments-analytics"), {"period": "2026Q3"}).status_code == 200


@pytest.mark.parametrize(
    ("params", "parameter", "says"),
    [
        ({"period": "2026-09-30..2026-07-01"}, "period", "ends (2026-07-01) before it starts"),
        ({"period": "2020-01-01..2026-01-01"}, "period", "longer than the 3 years"),
        ({"stage": "prospect"}, "stage", "'prospect' is not a stage"),
        ({"sort": "colour"}, "sort", "'colour' is not a column"),
        ({"channel": "fax"}, "channel", "'fax' is not a channel"),
    ],
)
def test_bad_input_gets_the_form_back_naming_the_parameter(client, ops_user, params, parameter, says):
    client.force_login(ops_user)
    response = client.get(reverse("segments-analytics"), params)
    assert response.status_code == 400
    html = unescape(response.content.decode())
    assert f'data-error-parameter="{parameter}"' in html
    assert says in html
    csv_response = client.get(reverse("segments-analytics-csv"), params)
    assert csv_response.status_code == 400
    assert csv_response.content.decode().startswith(f"{parameter}: ")


def test_the_csv_has_the_database_first_then_each_segment(client, ops_user):
    stored()
    client.force_login(ops_user)
    response = client.get(reverse("segments-analytics-csv"), {"period": "2026Q3", "sort": "-engagement"})
    assert response["Content-Type"].startswith("text/csv")
    assert "segment-comparison-2026Q3.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["name"] for row in rows] == ["Whole database", "Analysed"]
    analysed = rows[1]
    assert (analysed["members_start"], analysed["members_end"], analysed["engaged"]) == ("3", "3", "4")
    assert float(analysed["engagement_rate"]) == pytest.approx(0.8)
    assert analysed["revenue"] == "1150.00"


def test_the_api_compares_a_quarter(api_client):
    stored()
    response = api_client("segments:read").get("/api/v1/analytics/segments/", {"period": "2026Q3"})
    assert response.status_code == 200
    body = response.json()
    assert body["period"] == {"label": "2026Q3", "first": "2026-07-01", "last": "2026-09-30"}
    (row,) = body["segments"]
    assert row["segment"] == "analysed"
    assert row["engagement_rate"]["value"] == pytest.approx(0.8)
    assert row["channels"]["email"]["responders"] == 3
    assert body["baseline"]["members_end"] == 6
    only_web = api_client("segments:read").get("/api/v1/analytics/segments/", {"period": "2026Q3", "channel": "web"})
    assert list(only_web.json()["segments"][0]["channels"]) == ["web"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"period": "2026-09-30..2026-07-01"}, "period"),
        ({"period": "2022-01-01..2026-06-30"}, "period"),
        ({"stage": "prospect"}, "stage"),
        ({"channel": "fax"}, "channel"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_the_api_answers_bad_input_with_a_400_naming_the_parameter(api_client, params, field):
    response = api_client("segments:read").get("/api/v1/analytics/segments/", params)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_the_api_needs_the_segments_read_scope(api_client):
    assert api_client("contacts:read").get("/api/v1/analytics/segments/").status_code == 403


def test_overlap_counts_shared_members_and_jaccard():
    a, b, c = (SegmentFactory(kind="static", rule=None) for _ in range(3))
    contacts = ContactFactory.create_batch(6)
    for segment, members in ((a, contacts[:4]), (b, contacts[2:6]), (c, contacts[5:])):
        Membership.objects.bulk_create([Membership(segment=segment, contact=x) for x in members])
    result = overlap([a, b, c])
    assert result.sizes == [4, 4, 1]
    assert result.shared[0][1] == 2  # contacts 2 and 3
    assert result.jaccard(0, 1) == pytest.approx(2 / 6)
    assert result.shared[1][2] == 1
    assert result.jaccard(1, 2) == pytest.approx(1 / 4)
    assert result.shared[0][2] == 0
    assert result.jaccard(0, 2) == 0


def test_overlap_refuses_more_than_30_segments(client, ops_user, api_client):
    segments = more_segments(31)
    client.force_login(ops_user)
    response = client.get(reverse("segments-overlap"), {"segments": [s.pk for s in segments]})
    assert response.status_code == 400
    assert 'data-error-parameter="segments"' in response.content.decode()
    api = api_client("segments:read").get(
        "/api/v1/analytics/overlap/", {"segments": ",".join(s.slug for s in segments)}
    )
    assert api.status_code == 400
    assert api.json()["error"]["field"] == "segments"


def test_the_overlap_page_draws_a_heat_map(client, ops_user, django_assert_max_num_queries):
    segments = more_segments(4)
    client.force_login(ops_user)
    # (the overlap statement sits in a savepoint that sets and puts back its work_mem: 4 of these)
    with django_assert_max_num_queries(8):
        response = client.get(reverse("segments-overlap"), {"segments": [s.pk for s in segments]})
    assert response.status_code == 200
    assert "Jaccard index" in response.content.decode()


def test_the_segment_analytics_page(client, ops_user, django_assert_max_num_queries):
    world = stored()
    parent = SegmentFactory(kind="static", rule=None, name="Everyone")
    world.segment.parent = parent
    world.segment.save()
    rollup.compute_and_store([Q3], segment_ids=[parent.pk])
    client.force_login(ops_user)
    url = reverse("segments-analytics-detail", args=[world.segment.pk])
    client.get(url, {"period": "2026Q3"})
    with django_assert_max_num_queries(24):
        response = client.get(url, {"period": "2026Q3"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="parent-row"' in html
    assert "Everyone" in html
    assert "summer-launch" in html  # campaign response
    assert 'id="reasons"' in html
    assert "manual" in html
    bad = client.get(url, {"grain": "fortnight"})
    assert bad.status_code == 400
    assert 'data-error-parameter="grain"' in bad.content.decode()


def test_sales_reps_cannot_open_the_analytics_pages(client, sales_user):
    client.force_login(sales_user)
    assert client.get(reverse("segments-analytics")).status_code == 403


def test_the_size_chart_marks_rule_edits_and_failed_refreshes(client, ops_user):
    world = stored()
    RuleVersion.objects.create(segment=world.segment, old_rule=None, new_rule={"all": []})
    record_failure(world.segment.pk, since=None, error="OperationalError: the database went away")
    client.force_login(ops_user)
    this_month = f"{timezone.localdate():%Y-%m}"  # the edit and the failure happen today
    url = reverse("segments-analytics-detail", args=[world.segment.pk])
    html = client.get(url, {"period": this_month}).content.decode()
    assert 'class="mark mark-rule"' in html
    assert "refresh failed: OperationalError: the database went away" in html
