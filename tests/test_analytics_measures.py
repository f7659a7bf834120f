"""Segment analytics measures against figures worked out by hand (tests/analytics_support.py)."""

from datetime import date
from decimal import Decimal

import pytest
from statsmodels.stats.proportion import proportion_confint

from segments.analytics import rollup
from segments.analytics.measures import compare_segments, segment_measures
from segments.analytics.periods import Period, parse_period
from segments.analytics.wilson import mean_with_interval, wilson
from tests.analytics_support import build_world

pytestmark = pytest.mark.django_db

Q3 = parse_period("2026Q3")
AVG = 245 / 92  # day-end sizes over Q3 sum to 245 (see the worked timeline in the test below)


@pytest.fixture
def world():
    world = build_world()
    rollup.compute_and_store([Q3], segment_ids=[world.segment.pk])
    return world


def test_membership_over_the_quarter(world):
    # Day-end sizes: 3 (1-4 Jul), 2 (5-9 Jul: E left at 00:00 on the 5th), 3 (10-31 Jul: B joined),
    # 2 (1-14 Aug: B left), 3 (15-19 Aug: C), 2 (20-31 Aug), 3 (1-30 Sep: B rejoined) = 245 over 92 days;
    # each day's start is the day before's end, and 30 Jun and 30 Sep both end at 3, so starts sum to 245 too.
    m = segment_measures(world.segment, Q3)
    assert (m.members_start, m.members_end) == (3, 3)  # A, E, F on 30 Jun; A, B, F on 30 Sep
    assert m.avg_members == pytest.approx(AVG)
    assert m.members_during == 5  # A, B, C, E, F (B's rejoin is the same contact)
    assert m.joins == {"rule": 2, "manual": 1}
    assert m.leaves == {"rule": 3}


def test_engagement_counts_outcomes_at_the_join_instant_but_not_at_the_leave_instant(world):
    m = segment_measures(world.segment, Q3)
    # A (open), B (visit 20 Jul, form 2 Sep), C (open at its join instant), E (open a second before
    # it left); B's download fell between its intervals, C's click on its leave instant, E's second
    # open on its leave instant, and D was never a member.
    assert m.engaged == 4
    assert m.opens_per_member == pytest.approx(3 / AVG)  # A, C, E's first
    assert m.clicks_per_member == pytest.approx(1 / AVG)  # A only
    assert m.engagement.value == pytest.approx(4 / 5)


def test_conversion_and_revenue_from_deals_and_purchases(world):
    m = segment_measures(world.segment, Q3)
    assert m.converted == 1  # A became a customer and won a deal; B's win fell outside its intervals
    assert m.conversion.value == pytest.approx(1 / 3)  # over average members, rounded: 2.66 -> 3
    assert (m.won_deals, m.won_amount) == (1, Decimal("1000.00"))
    assert (m.purchases, m.purchase_value) == (2, Decimal("150.00"))  # A 50 and F 100
    assert m.revenue == Decimal("1150.00")
    assert m.revenue_per_contact.value == pytest.approx(1150 / AVG)
    # Spread: A brought 1,050 and F 100; the other members 0.
    expected = mean_with_interval(1150.0, 1050.0**2 + 100.0**2, AVG)
    assert (m.revenue_per_contact.low, m.revenue_per_contact.high) == pytest.approx((expected.low, expected.high))
    assert (m.deals_created, m.pipeline_created) == (1, Decimal("500.00"))  # B's, on 5 Sep while a member
    assert m.stage_moves["customer"] == {"reached": 1, "from_previous": 1}


def test_channel_response(world):
    m = segment_measures(world.segment, Q3)
    email, web = m.channels["email"], m.channels["web"]
    assert (email.responders, email.activities, email.converted) == (3, 4, 1)  # A, C, E; A converted
    assert (web.responders, web.activities) == (1, 2)  # B's visit and form
    assert "content" not in m.channels  # B's download came while it was out


def test_the_whole_database_counts_every_contact_from_its_creation(world):
    m = segment_measures(None, Q3)
    assert (m.members_start, m.members_end, m.avg_members) == (6, 6, 6)
    assert m.engaged == 5  # everyone but F
    assert m.opens_per_member == pytest.approx(5 / 6)
    assert m.converted == 2  # A, and B's won deal now counts
    assert m.revenue == Decimal("1450.00")


def test_a_range_computed_on_request_matches_the_stored_quarter(world):
    stored = segment_measures(world.segment, Q3)
    live = segment_measures(world.segment, Period(date(2026, 7, 1), date(2026, 9, 30)))
    assert live.period.grain is None
    for name in ("members_start", "members_end", "avg_members", "members_during", "engaged", "converted", "revenue"):
        assert getattr(live, name) == getattr(stored, name), name


def test_a_month_within_the_quarter(world):
    rollup.compute_and_store([parse_period("2026-08")], segment_ids=[world.segment.pk])
    m = segment_measures(world.segment, parse_period("2026-08"))
    assert (m.members_start, m.members_end) == (3, 2)  # A, B, F at the end of 31 Jul; A, F at the end of 31 Aug
    # Members at the start (the end of 31 Jul, B included until 1 Aug 00:00) and C, who joined.
    assert m.members_during == 4


def test_a_deleted_contact_keeps_its_contribution_to_stored_rollups(world):
    world.f.delete()
    m = segment_measures(world.segment, Q3)
    assert m.purchase_value == Decimal("150.00")
    assert m.members_during == 5


def test_other_stages_are_read_from_the_stage_rows(world):
    m = segment_measures(world.segment, Q3, stage="mql")
    assert m.converted == 1  # nobody became an MQL, but A won a deal


def test_comparison_flags_only_what_the_interval_separates(world):
    comparison = compare_segments(Q3)
    (row,) = comparison.rows
    assert comparison.baseline.segment is None
    assert row.segment == world.segment
    # Five members cannot separate an engagement of 4/5 from the database's 5/6.
    assert "engagement" not in row.flags


@pytest.mark.parametrize(("successes", "trials"), [(0, 1), (1, 1), (4, 5), (1, 3), (37, 120), (500, 1000), (3, 100000)])
def test_wilson_matches_statsmodels(successes, trials):
    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    estimate = wilson(successes, trials)
    assert estimate.value == pytest.approx(successes / trials)
    assert (estimate.low, estimate.high) == pytest.approx((low, high), abs=1e-12)


def test_wilson_of_nothing_is_empty():
    assert wilson(0, 0).value is None
