"""Operations' segment pages: overview tree with growth, segment page with charts, members,
tree, where used, refresh state and rule history; refresh now and its status poll."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from segments.editing import save_segment
from segments.models import Membership, RuleVersion, Segment, SegmentDay, SegmentReference
from segments.pages.charts import nice_ticks
from segments.pages.segment_page import history_from
from segments.refresh import refresh_segment
from tests.factories import ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def test_history_walks_back_from_todays_size():
    today = timezone.localdate()
    days = {
        today: SegmentDay(day=today, joins=5, leaves=1, size=20),
        today - timedelta(days=2): SegmentDay(day=today - timedelta(days=2), joins=10, leaves=0, size=16),
    }
    history = history_from(20, days, today=today, span=4)
    assert history.days[-1] == today
    assert history.sizes == [6, 16, 16, 20]
    assert history.joins == [0, 10, 0, 5]
    assert history.leaves == [0, 0, 0, 1]


def test_nice_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0, 87) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0, 1) == [0, 1]
    assert nice_ticks(0, 3, count=3) == [0, 1, 2, 3]
    assert nice_ticks(0, 12_345)[-1] >= 12_345


def make_hot_segment(**kwargs) -> Segment:
    return save_segment(
        Segment(
            name="Hot leads",
            slug="hot-leads",
            kind="dynamic",
            rule={"field": "lead_score", "op": "gte", "value": 50},
            **kwargs,
        )
    )


def test_segment_page_shows_charts_members_and_refresh_state(client, ops_user):
    ContactFactory.create_batch(3, lead_score=80)
    cold = ContactFactory(lead_score=10)
    segment = make_hot_segment()
    refresh_segment(segment.pk)
    segment.refresh_from_db()
    client.force_login(ops_user)
    response = client.get(reverse("segments-detail", args=[segment.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('<svg class="chart"') == 2
    assert "Members of Hot leads per day" in html
    assert f"{timezone.localdate():%-d %b}" in html  # a date on the x axis
    assert len(response.context["page"].rows) == 3
    assert cold.email not in html
    assert response.context["history"].joins[-1] == 3
    assert "+3 / −0" in html
    assert "ms</div>" in html


def test_members_are_filtered_and_searched(client, ops_user):
    ada = ContactFactory(lead_score=80, first_name="Ada", lifecycle_stage="customer")
    ContactFactory(lead_score=80, first_name="Bob", lifecycle_stage="lead")
    segment = make_hot_segment()
    refresh_segment(segment.pk)
    client.force_login(ops_user)
    url = reverse("segments-detail", args=[segment.pk])
    assert [m.contact for m in client.get(url, {"q": "ada"}).context["page"].rows] == [ada]
    assert [m.contact for m in client.get(url, {"stage": "customer"}).context["page"].rows] == [ada]


def test_it_shows_tree_uses_and_rule_history(client, ops_user):
    parent = SegmentFactory(name="All leads", slug="all-leads")
    segment = make_hot_segment(parent=parent)
    child = save_segment(
        Segment(name="Hot EU", slug="hot-eu", rule={"field": "country", "op": "eq", "value": "DE"}, parent=segment)
    )
    reader = save_segment(Segment(name="Not hot", slug="not-hot", rule={"not": {"in_segment": "hot-leads"}}))
    segment.rule = {"field": "lead_score", "op": "gte", "value": 60}
    save_segment(segment, user=ops_user)
    client.force_login(ops_user)
    response = client.get(reverse("segments-detail", args=[segment.pk]))
    html = response.content.decode()
    assert [s.name for s in response.context["lineage"]] == ["All leads"]
    assert [n.segment.name for n in response.context["subtree"]] == ["Hot EU"]
    uses = {(u.what, u.name) for u in response.context["uses"]}
    assert ("Child segment", child.name) in uses
    assert ("Rule reads it (in_segment)", reader.name) in uses
    assert RuleVersion.objects.filter(segment=segment).count() == 2
    assert "Lead score is at least 60" in [line.text for line in response.context["rule_lines"]]
    edit = response.context["diffs"][0].rows
    assert [(row.before.text, row.after.text, row.change) for row in edit] == [
        ("Lead score is at least 50", "Lead score is at least 60", "changed")
    ]
    assert '<td><span style="padding-left: 0px">Lead score is at least 50</span></td>' in html
    assert "&quot;value&quot;" not in html.split('id="rule-words"')[1].split("</ul>")[0]
    assert SegmentReference.objects.filter(to_segment=segment).exists()


def test_segment_page_query_count_does_not_grow_with_members(client, ops_user, django_assert_max_num_queries):
    segment = make_hot_segment()
    ContactFactory.create_batch(5, lead_score=80)
    refresh_segment(segment.pk)
    client.force_login(ops_user)
    url = reverse("segments-detail", args=[segment.pk])
    client.get(url)
    with django_assert_max_num_queries(40) as few:
        client.get(url)
    ContactFactory.create_batch(30, lead_score=90)
    refresh_segment(segment.pk)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(url)


def test_overview_lists_the_tree_with_growth_and_sorts(client, ops_user):
    parent = SegmentFactory(name="B parent", slug="b-parent", size=10)
    SegmentFactory(name="A child", slug="a-child", parent=parent, size=4)
    big = SegmentFactory(name="C big", slug="c-big", size=100)
    today = timezone.localdate()
    SegmentDay.objects.create(segment=big, day=today - timedelta(days=2), joins=3, leaves=0, size=100)
    SegmentDay.objects.create(segment=big, day=today - timedelta(days=20), joins=0, leaves=1, size=97)
    client.force_login(ops_user)
    response = client.get(reverse("segments-overview"))
    rows = response.context["rows"]
    assert [(n.segment.name, n.depth) for n in rows] == [("B parent", 0), ("A child", 1), ("C big", 0)]
    growth = {n.segment.name: n.growth for n in rows}
    assert growth["C big"] == {7: 3, 30: 2}
    by_size = client.get(reverse("segments-overview"), {"sort": "-size"}).context["rows"]
    assert [n.segment.name for n in by_size] == ["C big", "B parent", "A child"]


def test_refresh_now_queues_and_status_reports(client, ops_user, django_capture_on_commit_callbacks):
    segment = make_hot_segment()
    client.force_login(ops_user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("segments-refresh", args=[segment.pk]))
    assert response.status_code == 200
    assert response.json()["queued"] is True
    assert len(callbacks) == 1
    state = client.get(reverse("segments-status", args=[segment.pk])).json()
    assert state["status"] == "never"
    refresh_segment(segment.pk)
    state = client.get(reverse("segments-status", args=[segment.pk])).json()
    assert state["status"] == "ok"
    assert state["refreshed_at"] is not None


def test_static_segments_are_not_refreshed(client, ops_user):
    static = SegmentFactory(kind="static", rule=None)
    client.force_login(ops_user)
    response = client.post(reverse("segments-refresh", args=[static.pk]))
    assert response.status_code == 400
    assert response.json()["message"] == "Static segments change by hand only."


def test_sales_reps_cannot_open_segment_pages(client, sales_user):
    segment = SegmentFactory()
    client.force_login(sales_user)
    for url in (reverse("segments-overview"), reverse("segments-detail", args=[segment.pk])):
        assert client.get(url).status_code == 403
    assert client.post(reverse("segments-refresh", args=[segment.pk])).status_code == 403
    assert Membership.objects.count() == 0
