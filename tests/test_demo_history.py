"""make run's demo history: the rule segments replayed at weekly points over the past weeks, as of
each point (contacts' stages, scores and metrics rewound to it, events and relative dates measured
from it, contacts that did not exist yet left out), through the one membership writer: one write
per segment and point, whatever the contacts; and the demo campaigns started, sent and answered at
those points."""

from datetime import timedelta
from unittest.mock import ANY

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.core.management.color import no_style
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from activation.demo_campaigns import CAMPAIGNS, WINDOW_DAYS
from activation.experiment_models import Arm, Experiment, Exposure, Metric
from activation.experiment_results import experiment_results
from activation.models import Campaign
from contacts.demo_data import seed_demo
from contacts.models import Activity, Contact, ContactMetrics, LifecycleChange
from segments.catalog import load_catalog
from segments.demo_history import build_history
from segments.governance.report import Filters, governance_report
from segments.models import Membership, MembershipChange, Review, RuleVersion, Segment, SegmentDay, SegmentStat
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory, SegmentFactory
from tests.segments_support import run_queued

pytestmark = pytest.mark.django_db

NOW = timezone.now()
CLICKED_THIS_WEEK = {"event": {"kind": "email_click"}, "op": "performed", "within_days": 7}


def clicker(*, created_weeks_ago: int, clicks_weeks_ago: list[int]):
    contact = ContactFactory(created_at=NOW - timedelta(weeks=created_weeks_ago))
    for weeks in clicks_weeks_ago:
        ActivityFactory(contact=contact, kind="email_click", occurred_at=NOW - timedelta(weeks=weeks, days=1))
    return contact


def test_members_join_and_leave_as_of_each_weekly_point():
    early = clicker(created_weeks_ago=10, clicks_weeks_ago=[2])  # clicked in the week before point -2
    late = clicker(created_weeks_ago=1, clicks_weeks_ago=[2])  # the same click, but created after point -2
    segment = SegmentFactory(slug="clicked", rule=CLICKED_THIS_WEEK)

    history = build_history(now=NOW, weeks=3)

    changes = list(MembershipChange.objects.filter(segment=segment).order_by("changed_at", "id"))
    assert [(c.contact_id, c.kind, c.changed_at) for c in changes] == [
        (early.pk, "join", NOW - timedelta(weeks=2)),
        (early.pk, "leave", NOW - timedelta(weeks=1)),
    ]
    assert changes[0].reason == "rule"
    assert late.pk not in {c.contact_id for c in changes}
    days = dict(SegmentDay.objects.filter(segment=segment).values_list("day", "size"))
    assert days == {
        timezone.localdate(NOW - timedelta(weeks=2)): 1,
        timezone.localdate(NOW - timedelta(weeks=1)): 0,
    }
    assert (history.points, history.writes, history.joins, history.leaves) == (3, 3, 1, 1)


def test_static_and_paused_segments_are_not_replayed():
    clicker(created_weeks_ago=10, clicks_weeks_ago=[1, 2, 3])
    SegmentFactory(slug="static", kind="static", rule=None)
    SegmentFactory(slug="paused", rule=CLICKED_THIS_WEEK, status="paused")

    assert build_history(now=NOW, weeks=2).writes == 0
    assert not MembershipChange.objects.exists()


def test_the_statements_grow_with_points_and_segments_not_contacts():
    SegmentFactory(slug="clicked", rule=CLICKED_THIS_WEEK)
    clicker(created_weeks_ago=10, clicks_weeks_ago=[1, 2])
    with CaptureQueriesContext(connection) as few:
        build_history(now=NOW, weeks=2)
    MembershipChange.objects.all().delete()
    for _ in range(20):
        clicker(created_weeks_ago=10, clicks_weeks_ago=[1, 2])
    SegmentDay.objects.all().delete()

    with CaptureQueriesContext(connection) as many:
        build_history(now=NOW + timedelta(seconds=1), weeks=2)

    assert len(many) <= len(few) + 2


def test_the_command_replays_before_it_builds_and_refuses_history_without_refresh(capsys):
    clicker(created_weeks_ago=10, clicks_weeks_ago=[1])

    with pytest.raises(CommandError, match="give --refresh too"):
        call_command("load_catalog", "--history", "4")
    call_command("load_catalog", "--refresh", "--history", "4")

    out = capsys.readouterr().out
    replayed = Segment.objects.active().rule_based().count()
    assert f"History: 4 weekly points, {4 * replayed} membership writes" in out
    assert replayed > 10
    # the analytics backfill is left to the worker, which runs it like the nightly job
    assert "Segment analytics for the year: queued for the worker." in out
    assert run_queued("segments.tasks.update_analytics_task") == [{"periods": ANY, "days": 365, "backfill": True}]
    assert SegmentStat.objects.filter(segment__slug="enterprise").exists()


def test_edited_catalog_rules_are_replayed_with_their_earlier_rule_until_the_edit(capsys):
    """The demo's enterprise segment took 2,000+ employee companies until 20 weeks ago, then 1,000+:
    a contact at a 1,500-employee company joins at the edit, which is a rule version with its note
    and sizes; the first version holds the earlier rule from the first point."""
    mid = ContactFactory(company=CompanyFactory(employee_count=1500), created_at=NOW - timedelta(weeks=60))
    big = ContactFactory(company=CompanyFactory(employee_count=5000), created_at=NOW - timedelta(weeks=60))
    call_command("load_catalog", "--refresh", "--history", "30")
    enterprise = Segment.objects.get(slug="enterprise")
    edited_at = timezone.now() - timedelta(weeks=20)

    joins = dict(
        MembershipChange.objects.filter(segment=enterprise, kind="join").values_list("contact_id", "changed_at")
    )
    versions = list(RuleVersion.objects.filter(segment=enterprise).order_by("changed_at"))

    assert abs(joins[mid.pk] - edited_at) < timedelta(minutes=1)  # the first point after the edit
    assert joins[big.pk] < joins[mid.pk] - timedelta(weeks=9)
    assert [(v.old_rule, v.new_rule) for v in versions] == [
        (None, {"field": "company.employee_count", "op": "gte", "value": 2000}),
        (
            {"field": "company.employee_count", "op": "gte", "value": 2000},
            {"field": "company.employee_count", "op": "gte", "value": 1000},
        ),
    ]
    assert (versions[1].size_before, versions[1].size_after) == (1, 2)
    assert "territory review" in versions[1].note
    assert Membership.objects.filter(segment=enterprise).count() == 2


def joins_and_leaves(segment: Segment) -> list[tuple]:
    return list(
        MembershipChange.objects.filter(segment=segment)
        .order_by("changed_at", "id")
        .values_list("contact_id", "kind", "changed_at")
    )


def test_stage_and_lead_score_are_read_as_of_each_point():
    """A lead since week 40 became a customer a day before the point of week 26 (month 6); its lead
    score of 70 today was 70 - 4 funnel steps * 9 = 34 before that."""
    created, became = NOW - timedelta(weeks=40), NOW - timedelta(weeks=26, days=1)
    contact = ContactFactory(created_at=created, lifecycle_stage="lead", lifecycle_changed_at=created)
    LifecycleChange.objects.create(contact=contact, from_stage="lead", to_stage="customer", changed_at=became)
    Contact.objects.filter(pk=contact.pk).update(
        lifecycle_stage="customer", lifecycle_changed_at=became, customer_since=timezone.localdate(became),
        lead_score=70,
    )  # fmt: skip
    customers = SegmentFactory(slug="customers", rule={"field": "lifecycle_stage", "op": "eq", "value": "customer"})
    leads = SegmentFactory(slug="leads", rule={"field": "lifecycle_stage", "op": "eq", "value": "lead"})
    scored = SegmentFactory(slug="scored", rule={"field": "lead_score", "op": "gte", "value": 50})

    build_history(now=NOW, weeks=30)

    became_point = NOW - timedelta(weeks=26)
    assert joins_and_leaves(customers) == [(contact.pk, "join", became_point)]
    assert joins_and_leaves(leads) == [
        (contact.pk, "join", NOW - timedelta(weeks=30)),
        (contact.pk, "leave", became_point),
    ]
    assert joins_and_leaves(scored) == [(contact.pk, "join", became_point)]
    contact.refresh_from_db()  # today's values are back
    assert (contact.lifecycle_stage, contact.lead_score, contact.customer_since) == (
        "customer",
        70,
        timezone.localdate(became),
    )


def test_a_yearly_renewal_is_read_as_the_one_that_was_next_at_each_point():
    """A customer for two years renews yearly; the renewal 67 days ago was the next one until it
    passed, so the contact was due within 90 days from the point of week 22 until week 10."""
    passed = timezone.localdate(NOW - timedelta(days=67))
    if (passed.month, passed.day) == (2, 29):
        passed -= timedelta(days=1)
    since, renewal = passed.replace(year=passed.year - 1), passed.replace(year=passed.year + 1)
    created = NOW - timedelta(weeks=120)
    contact = ContactFactory(created_at=created, lifecycle_stage="customer", lifecycle_changed_at=created)
    Contact.objects.filter(pk=contact.pk).update(customer_since=since, renewal_date=renewal)
    due = SegmentFactory(slug="due", rule={"field": "renewal_date", "op": "in_next_days", "value": 90})

    build_history(now=NOW, weeks=26)

    assert joins_and_leaves(due) == [
        (contact.pk, "join", NOW - timedelta(weeks=22)),
        (contact.pk, "leave", NOW - timedelta(weeks=9)),
    ]
    contact.refresh_from_db()
    assert contact.renewal_date == renewal


def test_the_catalog_is_built_from_the_first_point_and_refreshed_as_usual_after_it():
    """Three weeks of history: the segments and their first rule versions date from the first point
    (with the size built then), and a contact who became a customer after the last point joins at
    today's refresh for its rule, not as a first build."""
    created, became = NOW - timedelta(weeks=10), NOW - timedelta(days=2)
    contact = ContactFactory(created_at=created, lifecycle_stage="lead", lifecycle_changed_at=created)
    LifecycleChange.objects.create(contact=contact, from_stage="lead", to_stage="customer", changed_at=became)
    Contact.objects.filter(pk=contact.pk).update(lifecycle_stage="customer", lifecycle_changed_at=became)

    call_command("load_catalog", "--refresh", "--history", "3")

    customers = Segment.objects.get(slug="suppress-active-customers")
    first_point = timezone.now() - timedelta(weeks=3)
    assert abs(customers.created_at - first_point) < timedelta(minutes=1)
    version = RuleVersion.objects.get(segment=customers)
    assert abs(version.changed_at - first_point) < timedelta(minutes=1)
    assert (version.old_rule, version.size_after) == (None, 0)
    change = MembershipChange.objects.get(segment=customers)
    assert (change.contact_id, change.kind, change.reason) == (contact.pk, "join", "rule")
    assert change.changed_at > NOW


def test_metrics_are_computed_as_of_each_point_and_as_of_now_after():
    contact = clicker(created_weeks_ago=20, clicks_weeks_ago=[9, 6, 3])
    segment = SegmentFactory(slug="active", rule={"field": "metrics.activity_count", "op": "gte", "value": 2})

    build_history(now=NOW, weeks=10)

    assert joins_and_leaves(segment) == [(contact.pk, "join", NOW - timedelta(weeks=6))]
    metrics = ContactMetrics.objects.get(contact=contact)
    assert (metrics.as_of, metrics.activity_count) == (NOW, 3)


def contacts_in(stage: str, n: int) -> list[Contact]:
    created = NOW - timedelta(weeks=30)
    return ContactFactory.create_batch(n, created_at=created, lifecycle_stage=stage, lifecycle_changed_at=created)


def test_campaigns_with_variants_start_send_and_are_answered_through_the_year():
    """With 20 weeks of history, the two demo campaigns that start in them run: customer expansion
    (weeks 16 to 8, stopped) and the year-end push (from week 5, running), each with a variant for
    every one of its target segments that exists, sends at its send weeks and responses after them."""
    customers, mqls = contacts_in("customer", 20), contacts_in("mql", 30)
    for slug, stage in [("rfv-champions", "customer"), ("active-mqls-awaiting-sales", "mql")]:
        SegmentFactory(slug=slug, rule={"field": "lifecycle_stage", "op": "eq", "value": stage})

    build_history(now=NOW, weeks=20)

    expansion = Experiment.objects.get(campaign__slug="customer-expansion")
    push = Experiment.objects.get(campaign__slug="year-end-pipeline")
    assert {c.slug: c.active for c in Campaign.objects.all()} == {
        "customer-expansion": False,
        "year-end-pipeline": True,
    }
    assert [v.segment.slug for v in expansion.campaign.variants.all()] == ["rfv-champions"]
    assert [v.segment.slug for v in push.campaign.variants.all()] == ["active-mqls-awaiting-sales"]
    assert (expansion.status, expansion.started_at, expansion.stopped_at) == (
        "stopped",
        NOW - timedelta(weeks=16),
        NOW - timedelta(weeks=8),
    )
    assert (push.status, push.started_at, push.holdout_percent) == ("running", NOW - timedelta(weeks=5), 10)
    # everyone eligible is exposed at the first send (nobody joins later), in both content arms
    for experiment, members in [(expansion, customers), (push, mqls)]:
        exposures = Exposure.objects.filter(experiment=experiment)
        assert sorted(exposures.values_list("contact_id", flat=True)) == sorted(c.pk for c in members)
        assert set(exposures.values_list("exposed_at", flat=True)) == {experiment.started_at}
        assert {Arm.SPECIFIC, Arm.GENERIC} <= set(exposures.values_list("arm", flat=True))
    # responses: in the window after the send, never after now, only from the content arms
    for experiment in (expansion, push):
        responses = Activity.objects.filter(campaign=experiment.campaign.slug)
        assert responses.filter(kind="email_open").exists()
        content = Exposure.objects.filter(experiment=experiment, arm__in=[Arm.SPECIFIC, Arm.GENERIC])
        assert set(responses.values_list("contact_id", flat=True)) <= set(content.values_list("contact_id", flat=True))
        for occurred in responses.values_list("occurred_at", flat=True):
            assert experiment.started_at <= occurred < experiment.started_at + timedelta(days=WINDOW_DAYS)
            assert occurred <= NOW
    # the results page reads them: clicks counted per arm are the contacts who clicked
    results = experiment_results(push, now=NOW)
    clicked = set(
        Activity.objects.filter(campaign=push.campaign.slug, kind="email_click").values_list("contact_id", flat=True)
    )
    counted = {row.arm: row.outcome for row in results.overall.metrics[Metric.CLICK]}
    arms = dict(Exposure.objects.filter(experiment=push).values_list("contact_id", "arm"))
    assert counted == {arm: sum(1 for pk in clicked if arms[pk] == arm) for arm in push.arms}


def fingerprint() -> dict:
    """What the demo history wrote, by e-mail and time (ids aside)."""
    demo = [campaign.slug for campaign in CAMPAIGNS]
    return {
        "changes": sorted(
            MembershipChange.objects.values_list("segment__slug", "contact__email", "kind", "changed_at", "reason")
        ),
        "exposures": sorted(
            Exposure.objects.values_list("experiment__campaign__slug", "contact__email", "arm", "exposed_at")
        ),
        "responses": sorted(
            Activity.objects.filter(campaign__in=demo).values_list("contact__email", "kind", "occurred_at", "campaign")
        ),
        "contacts": sorted(Contact.objects.values_list("email", "lifecycle_stage", "lead_score")),
        "metrics": sorted(ContactMetrics.objects.values_list("contact__email", "engagement_score", "as_of")),
    }


def test_the_seed_and_its_history_are_the_same_every_time():
    """Seeding with a seed, the catalog and 6 weeks of history (the year-end campaign's sends), twice
    from the same empty tables (ids restart where they did), write the same rows."""
    reset = connection.ops.sequence_reset_sql(no_style(), apps.get_models())

    def seed_and_replay() -> dict:
        with connection.cursor() as cursor:
            for statement in reset:
                cursor.execute(statement)
        seed_demo(contacts=60, seed=7, now=NOW)
        load_catalog()
        build_history(now=NOW, weeks=6)
        return fingerprint()

    with transaction.atomic():
        first = seed_and_replay()
        transaction.set_rollback(True)
    second = seed_and_replay()

    assert first == second
    assert first["exposures"]
    assert first["responses"]
    assert first["changes"]


def test_the_demo_catalog_has_past_reviews_some_overdue_and_some_segments_never_reviewed(capsys):
    """A year of history: most starter segments were reviewed within their cadence, some reviews are
    overdue, every sixth segment was never reviewed; each review is recorded as a person's is
    (snapshot included) and none dates from before its segment."""
    clicker(created_weeks_ago=60, clicks_weeks_ago=[1])

    call_command("load_catalog", "--refresh", "--history", "52")

    out = capsys.readouterr().out
    reviews = list(Review.objects.select_related("segment"))
    assert f"Governance: {len(reviews)} past reviews recorded for the new segments (demo)." in out
    assert all(review.segment.created_at < review.reviewed_at < timezone.now() for review in reviews)
    assert all(review.snapshot["taken_at"] and review.decision == "keep" for review in reviews)
    states = [
        row.due[kind].state(row.today, ahead_days=7) for row in governance_report(Filters()).rows for kind in row.due
    ]
    never = Segment.objects.active().exclude(reviews__isnull=False)
    assert 0 < states.count("overdue") < len(states) / 3
    assert states.count("ok") + states.count("coming") > len(states) / 2
    assert 0 < never.count() < Segment.objects.active().count() / 4
