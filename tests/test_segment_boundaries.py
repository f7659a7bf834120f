"""Boundary tests and dimension comparison on planted data, statistics checked against scipy."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from scipy import stats
from scipy.stats.contingency import association

from contacts.models import Activity, Company, Contact, ContactMetrics
from segments.boundaries import (
    BadInput,
    Bracket,
    boundary_test,
    compare_dimensions,
    create_bracket_segments,
    kruskal_from_counts,
    parse_bracketing,
)
from segments.models import Segment

FIRST_ID = 1_000_001
SMALL = [{"from": 1, "to": 50}, {"from": 50, "to": 250}, {"from": 250}]
LARGE = [{"from": 1, "to": 100}, {"from": 100, "to": 500}, {"from": 500}]


def plant(n=3000):
    """Employee counts spread over 1..1000; contacts at 500+ employees convert at 30%, others at 5%,
    and their engagement score is higher. Industry carries no signal; engagement level does."""
    now = timezone.now()
    values = [(i * 7919) % 1000 + 1 for i in range(n)]
    companies = Company.objects.bulk_create(
        Company(name=f"Co {i}", domain=f"co{i}.example", employee_count=v, industry=("a", "b")[i % 2])
        for i, v in enumerate(values)
    )
    # Ids of our own: the hold-out split follows contact ids, which would otherwise depend on what
    # the tests before this one created (PostgreSQL's sequences are not rolled back), and with them
    # where the tree's suggested cut lands.
    contacts = Contact.objects.bulk_create(
        Contact(pk=FIRST_ID + i, email=f"p{i}@example.com", company=c, lifecycle_stage="lead")
        for i, c in enumerate(companies)
    )
    purchases, metrics = [], []
    for i, (contact, value) in enumerate(zip(contacts, values, strict=True)):
        big = value >= 500
        if (big and i % 10 < 3) or (not big and i % 20 == 0):
            purchases.append(Activity(contact=contact, kind="purchase", value=100, occurred_at=now - timedelta(days=5)))
        level = "highly_engaged" if (big and i % 10 < 3) else "disengaged"
        metrics.append(
            ContactMetrics(
                contact=contact, as_of=now, engagement_score=(i % 13) + (20 if big else 0), engagement_level=level,
                email_engagement_level="disengaged", web_activity_level="inactive",
            )
        )  # fmt: skip
    Activity.objects.bulk_create(purchases)
    ContactMetrics.objects.bulk_create(metrics)
    return values, now


@pytest.mark.django_db
def test_the_bracketing_that_follows_the_planted_boundary_wins_and_the_tree_finds_it(django_assert_max_num_queries):
    _values, now = plant()

    # the field registry (2); in a savepoint with jit off on PostgreSQL, the three grouped statements
    with django_assert_max_num_queries(8):
        report = boundary_test(
            "company.employee_count", [parse_bracketing(SMALL, where="a"), parse_bracketing(LARGE, where="b")], now=now
        )

    small, large = report.bracketings
    assert report.best == 1
    assert large.cramers_v > small.cramers_v
    _value, low, _high = report.difference
    assert low > 0
    assert report.summary.startswith("Bracketing 2 (1–99 / 100–499 / 500+) separates converted more")
    assert [b.label for b in large.brackets] == ["1–99", "100–499", "500+"]
    assert any(495 <= b.low <= 505 for b in report.suggested if b.low is not None)
    assert report.suggested_heldout_v >= small.heldout_v


@pytest.mark.django_db
def test_boundary_statistics_match_scipy_on_the_raw_rows():
    _values, now = plant(1200)
    report = boundary_test(
        "company.employee_count", [parse_bracketing(SMALL, where="a"), parse_bracketing(LARGE, where="b")], now=now
    )
    converted = set(Activity.objects.filter(kind="purchase").values_list("contact_id", flat=True))
    rows = list(Contact.objects.values_list("pk", "company__employee_count", "metrics__engagement_score"))
    bracket = [0 if v < 100 else 1 if v < 500 else 2 for _pk, v, _s in rows]

    table = np.zeros((3, 2))
    for (pk, _v, _s), b in zip(rows, bracket, strict=True):
        table[b, int(pk in converted)] += 1
    chi2, p, _dof, _expected = stats.chi2_contingency(table, correction=False)
    groups = [[s for (_pk, _v, s), b in zip(rows, bracket, strict=True) if b == g] for g in range(3)]
    h, kw_p = stats.kruskal(*groups)

    large = report.bracketings[1]
    assert (large.chi2, large.p_value) == pytest.approx((chi2, p))
    assert large.cramers_v == pytest.approx(association(table.astype(int), method="cramer"))
    assert (large.kruskal_h, large.kruskal_p) == pytest.approx((h, kw_p))
    assert large.epsilon_squared == pytest.approx(h / (len(rows) - 1))
    assert [b.contacts for b in large.brackets] == [int(n) for n in table.sum(axis=1)]
    assert large.brackets[2].outcome.value == pytest.approx(table[2, 1] / table[2].sum())


def test_kruskal_from_counts_equals_scipy_with_ties():
    rng = np.random.default_rng(3)
    samples = [rng.integers(0, 6, size) for size in (40, 55, 31)]
    values, counts = np.unique(np.concatenate(samples), return_counts=False), None
    rows = [(g, v, int((s == v).sum())) for g, s in enumerate(samples) for v in np.unique(s)]
    groups, values, counts = (np.array(col, dtype=float) for col in zip(*rows, strict=True))

    h, p, _eps = kruskal_from_counts(values, groups, counts)

    expected = stats.kruskal(*samples)
    assert (h, p) == pytest.approx((expected.statistic, expected.pvalue))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"from": 1, "to": 50}, {"from": 40, "to": 250}], "b[1].from: 40 overlaps the bracket before"),
        ([{"from": 1, "to": 50}, {"from": 60}], "b[1].from: 60 leaves a gap after the bracket before"),
        ([{"from": 1, "to": 50}], "b: a bracketing is a list of at least two brackets"),
        ([{"from": 10, "to": 5}, {"from": 5}], "b[0]: 'from' (10) must be below 'to' (5)"),
        ([{"from": 1}, {"from": 50}], "b[0].to: only the last bracket may leave 'to' open"),
        ([{"from": "x", "to": 5}, {"from": 5}], "b[0].from: 'x' is not a number"),
    ],
)
def test_bad_bracketings_are_refused_naming_where(raw, message):
    with pytest.raises(BadInput) as error:
        parse_bracketing(raw, where="b")

    assert str(error.value).startswith(message)


@pytest.mark.django_db
def test_a_text_field_and_a_single_bracketing_are_refused():
    brackets = parse_bracketing(SMALL, where="a")

    with pytest.raises(BadInput, match=r"field: 'company\.industry' is a text field; a boundary test needs a number"):
        boundary_test("company.industry", [brackets, brackets])
    with pytest.raises(BadInput, match="bracketings: give at least two bracketings"):
        boundary_test("company.employee_count", [brackets])


@pytest.mark.django_db
def test_a_bracketing_becomes_a_set_of_segments():
    created = create_bracket_segments("company.employee_count", [Bracket(1, 100), Bracket(100, None)], prefix="Size")

    assert [s.name for s in created] == ["Size Company employee count 1–99", "Size Company employee count 100+"]
    assert Segment.objects.get(pk=created[1].pk).rule == {
        "all": [{"field": "company.employee_count", "op": "gte", "value": 100}]
    }


@pytest.mark.django_db
def test_behavioural_dimension_beats_a_firmographic_one_that_carries_no_signal(django_assert_max_num_queries):
    _values, now = plant(2000)

    with django_assert_max_num_queries(8):  # per scheme a grouped statement in a savepoint, jit off
        report = compare_dimensions(["behavioral", "lifecycle"], now=now)

    assert report.winner == "behavioral"
    by_scheme = {s.scheme: s for s in report.schemes}
    assert by_scheme["behavioral"].best_cell.startswith("highly_engaged")
    assert by_scheme["behavioral"].best_lift > 2
    assert by_scheme["lifecycle"].information_gain == pytest.approx(0)
    assert report.summary.startswith("Engagement level × top topic explains most of converted")


@pytest.mark.django_db
def test_dimension_comparison_needs_two_known_schemes():
    with pytest.raises(BadInput, match="schemes: name at least two of firmographic"):
        compare_dimensions(["behavioral", "astrology"])
