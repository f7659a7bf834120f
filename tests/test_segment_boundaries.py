"""Boundary tests and dimension comparison on planted data, statistics checked against scipy."""

from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone
from scipy import stats
from scipy.stats.contingency import association
from sklearn.metrics import mutual_info_score

from contacts.models import Activity, Company, Contact, ContactMetrics
from segments.boundaries import (
    HOLDOUT_MODULUS,
    MULTIPLIER,
    OFFSET,
    PRIME,
    TRAIN_BELOW,
    BadInput,
    Bracket,
    bootstrap,
    boundary_test,
    compare_dimensions,
    cramers_v,
    cramers_v_of_each,
    create_bracket_segments,
    kruskal_from_counts,
    mutual_information,
    mutual_information_of_each,
    parse_bracketing,
)
from segments.models import Membership, Segment
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory, DealFactory, SegmentFactory

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

    # the field registry (2); in a savepoint, with a settings statement in and one out on
    # PostgreSQL, one statement for the bracket table, the tree's rows and the scores to rank
    with django_assert_max_num_queries(7):
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
    outsider = ContactFactory(company=None)  # in no bracket: ranked with nobody
    ContactMetrics.objects.create(
        contact=outsider, as_of=now, engagement_score=25, engagement_level="disengaged",
        email_engagement_level="disengaged", web_activity_level="inactive",
    )  # fmt: skip
    report = boundary_test(
        "company.employee_count", [parse_bracketing(SMALL, where="a"), parse_bracketing(LARGE, where="b")], now=now
    )
    converted = set(Activity.objects.filter(kind="purchase").values_list("contact_id", flat=True))
    rows = list(
        Contact.objects.exclude(company=None).values_list("pk", "company__employee_count", "metrics__engagement_score")
    )
    bracket = [0 if v < 100 else 1 if v < 500 else 2 for _pk, v, _s in rows]
    small_bracket = [0 if v < 50 else 1 if v < 250 else 2 for _pk, v, _s in rows]

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
    small_groups = [[s for (_pk, _v, s), b in zip(rows, small_bracket, strict=True) if b == g] for g in range(3)]
    small = report.bracketings[0]
    assert (small.kruskal_h, small.kruskal_p) == pytest.approx(tuple(stats.kruskal(*small_groups)))
    assert [b.contacts for b in large.brackets] == [int(n) for n in table.sum(axis=1)]
    assert large.brackets[2].outcome.value == pytest.approx(table[2, 1] / table[2].sum())


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL planner settings")
def test_boundary_tests_and_comparisons_leave_the_callers_planner_settings_as_they_were():
    _values, now = plant(300)
    names = ["enable_sort", "work_mem", "jit"]
    query = "SELECT " + ", ".join(f"current_setting('{name}')" for name in names)
    with connection.cursor() as cursor:
        cursor.execute(query)
        before = cursor.fetchone()

        boundary_test(
            "company.employee_count", [parse_bracketing(SMALL, where="a"), parse_bracketing(LARGE, where="b")], now=now
        )
        compare_dimensions(["behavioral", "lifecycle"], now=now)

        cursor.execute(query)
        assert cursor.fetchone() == before


def test_kruskal_from_counts_equals_scipy_with_ties():
    rng = np.random.default_rng(3)
    samples = [rng.integers(0, 6, size) for size in (40, 55, 31)]
    values, counts = np.unique(np.concatenate(samples), return_counts=False), None
    rows = [(g, v, int((s == v).sum())) for g, s in enumerate(samples) for v in np.unique(s)]
    groups, values, counts = (np.array(col, dtype=float) for col in zip(*rows, strict=True))

    h, p, _eps = kruskal_from_counts(values, groups, counts)

    expected = stats.kruskal(*samples)
    assert (h, p) == pytest.approx((expected.statistic, expected.pvalue))


def test_cramers_v_of_a_stack_of_tables_equals_scipys_of_each():
    rng = np.random.default_rng(5)
    tables = rng.integers(0, 40, size=(300, 4, 3))
    tables[::7, 1, :] = 0  # empty rows, columns, and tables left with one row, one column or nothing
    tables[::11, :, 2] = 0
    tables[5, 1:, :] = 0
    tables[6, :, 1:] = 0
    tables[8] = 0

    each = cramers_v_of_each(tables)

    expected = [cramers_v(t) for t in tables]
    assert [v is None for v in expected] == list(np.isnan(each))
    assert [v for v in each if not np.isnan(v)] == pytest.approx([v for v in expected if v is not None])
    assert [association(t, method="cramer") for t in tables[1:5]] == pytest.approx(each[1:5])


def test_information_gain_of_a_stack_of_tables_equals_that_of_each_and_sklearns():
    rng = np.random.default_rng(7)
    tables = rng.integers(0, 40, size=(200, 5, 2)).astype(float)
    tables[::9, 2, :] = 0  # empty rows and columns, and an empty table
    tables[::13, :, 1] = 0
    tables[4] = 0

    each = mutual_information_of_each(tables)

    assert np.isnan(each[4])
    assert mutual_information(tables[4]) is None
    expected = [mutual_information(t) for i, t in enumerate(tables) if i != 4]
    assert list(np.delete(each, 4)) == pytest.approx(expected)
    assert each[1:4] == pytest.approx([mutual_info_score(None, None, contingency=t) / np.log(2) for t in tables[1:4]])


def test_a_bootstrap_of_the_stack_is_the_bootstrap_of_each_table():
    cells = np.array([[300, 40], [200, 60], [50, 30], [0, 0]])

    assert bootstrap(cells, cramers_v_of_each, stacked=True) == pytest.approx(bootstrap(cells, cramers_v))


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


def one_contact_per_bracket(count):
    """Contacts at companies of 1, 2, ... employees, and a bracketing with one bracket for each."""
    contacts = [
        ContactFactory(company=CompanyFactory(employee_count=size), email_status="valid")
        for size in range(1, count + 1)
    ]
    brackets = [Bracket(size, size + 1) for size in range(1, count)] + [Bracket(count, None)]
    return contacts, brackets


@pytest.mark.django_db
def test_outcomes_count_inside_the_window_edges_included_and_nothing_outside():
    # given outcomes at and just beyond both edges of a 30-day window
    now = timezone.now().replace(microsecond=500_000)
    start, tick = now - timedelta(days=30), timedelta(microseconds=1)
    contacts, brackets = one_contact_per_bracket(8)
    at_start, before_start, at_now, after_now, deal_at_start, opened, too_early, other_campaign = contacts
    ActivityFactory(contact=at_start, kind="purchase", value=10, occurred_at=start)
    ActivityFactory(contact=before_start, kind="purchase", value=10, occurred_at=start - tick)
    DealFactory(contact=before_start, stage="won", amount=50, closed_at=start - tick)
    for value in (5, 6):  # two purchases and two won deals: 311, counted once each
        ActivityFactory(contact=at_now, kind="purchase", value=value, occurred_at=now)
    DealFactory(contact=at_now, stage="won", amount=100, closed_at=now - timedelta(days=1))
    DealFactory(contact=at_now, stage="won", amount=200, closed_at=now)
    ActivityFactory(contact=at_now, kind="email_click", campaign="Spring", occurred_at=now)
    ActivityFactory(contact=after_now, kind="purchase", value=10, occurred_at=now + tick)
    ActivityFactory(contact=after_now, kind="email_open", occurred_at=now + tick)
    DealFactory(contact=after_now, stage="lost", amount=70, closed_at=now - timedelta(days=1))
    DealFactory(contact=after_now, stage="won", amount=70, closed_at=now + tick)
    DealFactory(contact=deal_at_start, stage="won", amount=7, closed_at=start)
    DealFactory(contact=None, company=deal_at_start.company, stage="won", amount=9, closed_at=now)
    ActivityFactory(contact=opened, kind="email_open", occurred_at=start)
    ActivityFactory(contact=opened, kind="pricing_view", occurred_at=now)
    ActivityFactory(contact=too_early, kind="email_click", campaign="spring", occurred_at=start - tick)
    ActivityFactory(contact=other_campaign, kind="email_click", campaign="autumn", occurred_at=now)

    # when a boundary test reads each contact's bracket, on conversion and on clicks of one campaign
    def per_contact(outcome):
        report = boundary_test(
            "company.employee_count", [brackets, brackets], outcome=outcome, days=30, now=now, campaign="SPRING"
        )
        return [(b.outcome.value, b.engaged.value, b.revenue_per_contact.value) for b in report.bracketings[0].brackets]

    # then (outcome, engaged, revenue) of each contact in order
    assert per_contact("converted") == [
        (1, 0, 10),
        (0, 0, 0),
        (1, 1, 311),
        (0, 0, 0),
        (1, 0, 7),
        (0, 1, 0),
        (0, 0, 0),
        (0, 1, 0),
    ]
    assert [responded for responded, _engaged, _revenue in per_contact("responded")] == [0, 0, 1, 0, 0, 0, 0, 0]


@pytest.mark.django_db
def test_behavioural_dimension_beats_a_firmographic_one_that_carries_no_signal(django_assert_max_num_queries):
    _values, now = plant(2000)

    with django_assert_max_num_queries(5):  # in a savepoint, with settings in and out on PostgreSQL, one statement
        report = compare_dimensions(["behavioral", "lifecycle"], now=now)

    assert report.winner == "behavioral"
    by_scheme = {s.scheme: s for s in report.schemes}
    assert by_scheme["behavioral"].best_cell.startswith("highly_engaged")
    assert by_scheme["behavioral"].best_lift > 2
    assert by_scheme["lifecycle"].information_gain == pytest.approx(0)
    assert report.summary.startswith("Engagement level × top topic explains most of converted")


def heldout(pk):
    return ((pk % PRIME) * MULTIPLIER + OFFSET) % PRIME % HOLDOUT_MODULUS >= TRAIN_BELOW


@pytest.mark.django_db
def test_the_segments_scheme_puts_each_contact_in_the_first_listed_segment_it_is_in(django_assert_max_num_queries):
    # given contacts of large companies (who buy more) in one segment, every third contact in
    # another (overlapping it), and the rest in neither
    values, now = plant(2000)
    buyers, thirds = SegmentFactory(slug="large", kind="static"), SegmentFactory(slug="thirds", kind="static")
    large = {FIRST_ID + i for i, v in enumerate(values) if v >= 500}
    every_third = {FIRST_ID + i for i in range(0, len(values), 3)}
    Membership.objects.bulk_create(
        [Membership(segment=buyers, contact_id=pk) for pk in large]
        + [Membership(segment=thirds, contact_id=pk) for pk in every_third]
    )

    # when the segments are compared with other schemes, an integer-celled one (firmographic) listed third
    with django_assert_max_num_queries(5):
        report = compare_dimensions(
            ["lifecycle", "behavioral", "firmographic", "segments"], segments=[buyers, thirds], now=now
        )

    # then its held-out table is the one of each contact's first listed segment
    converted = set(Activity.objects.filter(kind="purchase").values_list("contact_id", flat=True))
    cell = {pk: 1 if pk in large else 2 if pk in every_third else 0 for pk in range(FIRST_ID, FIRST_ID + 2000)}
    table = np.zeros((3, 2))
    for pk, row in cell.items():
        if heldout(pk):
            table[row, int(pk in converted)] += 1
    scheme = next(s for s in report.schemes if s.scheme == "segments")
    assert scheme.cells == 3
    assert scheme.best_cell == "large"
    assert scheme.cramers_v == pytest.approx(association(table.astype(int), method="cramer"))
    assert scheme.information_gain == pytest.approx(mutual_info_score(None, None, contingency=table) / np.log(2))
    assert report.heldout_contacts == table.sum()


@pytest.mark.django_db
def test_dimension_comparison_needs_two_known_schemes():
    with pytest.raises(BadInput, match="schemes: name at least two of firmographic"):
        compare_dimensions(["behavioral", "astrology"])


def test_a_report_imports_the_statistics_it_needs_while_its_statement_runs(db, monkeypatch):
    # given a process that has not imported them yet (a stand-in module: scipy is imported here)
    import importlib
    import sys
    import threading

    import segments.boundaries as boundaries

    monkeypatch.setattr(boundaries, "STATISTICS_MODULES", ("colorsys",))
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    importers = []
    real_import = importlib.import_module
    monkeypatch.setattr(
        importlib, "import_module", lambda name: importers.append(threading.current_thread()) or real_import(name)
    )

    with boundaries._tuned():
        assert Contact.objects.count() == 0  # the report's statement, meanwhile

    assert "colorsys" in sys.modules
    assert importers
    assert threading.current_thread() not in importers
