"""Segments reading metrics.* refresh after metrics change; the starter catalog's metric segments."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ

from contacts.metrics.compute import compute_metrics
from contacts.models import PendingChange
from segments.models import Segment
from segments.refresh import refresh_all, refresh_metric_segments
from segments.tasks import refresh_metric_segments_task
from tests.factories import ActivityFactory, ContactFactory, SegmentFactory
from tests.segments_support import member_ids

pytestmark = pytest.mark.django_db


def queued(func: str) -> list[tuple]:
    return [row.task["args"] for row in OrmQ.objects.all() if row.task["func"] == func]


READS_METRICS = {"field": "metrics.is_accelerating", "op": "is_true"}


def test_a_full_metrics_run_enqueues_the_refresh_of_metric_segments(django_capture_on_commit_callbacks):
    SegmentFactory(rule={"not": READS_METRICS})
    with django_capture_on_commit_callbacks(execute=True):
        compute_metrics()

    assert queued("segments.tasks.refresh_metric_segments_task") == [()]


def test_nothing_is_queued_after_metrics_while_no_segment_reads_them(django_capture_on_commit_callbacks):
    SegmentFactory(rule={"field": "lead_score", "op": "gte", "value": 50})
    SegmentFactory(rule=READS_METRICS, status="paused")
    contact = ContactFactory()
    with django_capture_on_commit_callbacks(execute=True):
        compute_metrics()
        compute_metrics(contact_ids=[contact.pk])

    assert queued("segments.tasks.refresh_metric_segments_task") == []


def test_a_metrics_run_for_some_contacts_re_evaluates_just_them(django_capture_on_commit_callbacks):
    SegmentFactory(rule={"any": [READS_METRICS]})
    contact = ContactFactory()

    with django_capture_on_commit_callbacks(execute=True):
        compute_metrics(contact_ids=[contact.pk])

    # re-read by the next catch-up (contacts/catch_up.py), as derived data only: no metrics run again
    assert list(PendingChange.objects.values_list("contact_id", "derive")) == [(contact.pk, False)]
    assert queued("contacts.tasks.catch_up_task") == [()]
    assert queued("segments.tasks.refresh_metric_segments_task") == []


def test_refresh_metric_segments_refreshes_readers_and_their_dependants_only():
    hot = ContactFactory()
    for _ in range(3):
        ActivityFactory(contact=hot, kind="demo_request", occurred_at=timezone.now() - timedelta(days=1))
    ContactFactory.create_batch(4)
    rule = {"field": "metrics.engagement_level", "op": "eq", "value": "highly_engaged"}
    engaged = SegmentFactory(slug="engaged", rule=rule)
    child = SegmentFactory(slug="engaged-us", parent=engaged, rule={"field": "country", "op": "eq", "value": "US"})
    other = SegmentFactory(slug="mqls", rule={"field": "lifecycle_stage", "op": "eq", "value": "mql"})
    compute_metrics()

    results = refresh_metric_segments()

    assert [r.slug for r in results] == ["engaged", "engaged-us"]
    assert member_ids(Segment.objects.get(pk=engaged.pk)) == {hot.pk}
    assert member_ids(Segment.objects.get(pk=child.pk)) == {hot.pk}
    assert Segment.objects.get(pk=other.pk).last_refreshed_at is None
    assert [r["slug"] for r in refresh_metric_segments_task()] == ["engaged", "engaged-us"]


def test_catalog_metric_segments_build_from_metrics():
    def recent(contact, kind, days, **fields):
        ActivityFactory(contact=contact, kind=kind, occurred_at=timezone.now() - timedelta(days=days), **fields)

    reader, security_reader, accelerating, lapsed, champion = ContactFactory.create_batch(5)
    at_risk = ContactFactory(lifecycle_stage="customer")
    ContactFactory.create_batch(6)
    recent(reader, "content_download", 2, topic="cloud-migration")
    recent(security_reader, "content_download", 2, topic="cybersecurity")
    for _ in range(4):
        recent(accelerating, "site_visit", 1)
    recent(lapsed, "demo_request", 65)
    for days in (2, 4, 6):
        recent(champion, "purchase", days, value=1000)
    for days in (300, 310, 320):
        recent(at_risk, "purchase", days, value=500)
    for days in (30, 45):  # two occasional buyers, so four buyers spread over the 1–5 scores
        recent(ContactFactory(), "purchase", days, value=10)
    call_command("load_catalog", stdout=StringIO())
    compute_metrics()

    results = refresh_all()

    assert {r.status for r in results} == {"ok"}, [r.error for r in results if r.error]

    def members(slug: str) -> set[int]:
        return member_ids(Segment.objects.get(slug=slug))

    assert members("cloud-migration-readers") == {reader.pk}
    assert members("cybersecurity-readers") == {security_reader.pk}
    assert members("accelerating-engagement") == {accelerating.pk}
    assert members("recently-disengaged") == {lapsed.pk}
    assert members("rfv-champions") == {champion.pk}
    assert members("at-risk-customers") == {at_risk.pk}
    assert champion.pk in members("top-20-engagement")
    assert lapsed.pk not in members("top-20-engagement")
    assert reader.pk not in members("bottom-40-engagement")
