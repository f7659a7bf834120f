"""The criteria coverage report (segments/coverage.py) and its admin page: figures against counts
by hand, statuses, the segments that read each field, and a fixed number of statements."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from contacts.models import Criterion, PropertySource
from segments.coverage import EXISTS, NEEDS_CREATION, NEEDS_ENRICHMENT, coverage_report, top_values
from segments.refresh import refresh_segment
from tests.factories import CompanyFactory, ContactFactory, PropertyDefinitionFactory, SegmentFactory


@pytest.fixture
def crm(db):
    """10 contacts: 9 with a company (industry set for 6 of them), 4 with a job function, 2 with a
    `budget` property (enriched)."""
    software = CompanyFactory(industry="software")
    retail = CompanyFactory(industry="retail")
    blank = CompanyFactory(industry="")
    PropertyDefinitionFactory(key="budget", type="number", layer="value", source=PropertySource.ENRICHED)
    people = []
    for n in range(10):
        company = [software] * 4 + [retail] * 2 + [blank] * 3 + [None]
        people.append(
            ContactFactory(
                company=company[n],
                job_function="engineering" if n < 3 else ("sales" if n == 3 else ""),
                lifecycle_stage="mql" if n % 2 == 0 else "lead",
                properties={"budget": 1000 * n} if n < 2 else {},
            )
        )
    mqls = SegmentFactory(name="MQLs", rule={"field": "lifecycle_stage", "op": "eq", "value": "mql"})
    engineers = SegmentFactory(
        name="MQL engineers", parent=mqls, rule={"field": "job_function", "op": "eq", "value": "engineering"}
    )
    budget = SegmentFactory(name="Big budgets", rule={"field": "props.budget", "op": "gte", "value": 1000})
    for segment in (mqls, engineers, budget):
        refresh_segment(segment.pk)
    return {"mqls": mqls, "engineers": engineers, "budget": budget}


def _criterion(report, name):
    return next(c for c in report.criteria if c.name == name)


def test_each_criterion_has_its_fill_rate_and_status(crm):
    report = coverage_report()

    assert report.total == 10
    industry = _criterion(report, "Industry")
    assert (industry.fields[0].filled, industry.fields[0].percent, industry.fields[0].distinct) == (6, 60.0, 2)
    assert industry.status == NEEDS_ENRICHMENT
    assert _criterion(report, "Lifecycle stage").status == EXISTS
    assert _criterion(report, "Lifecycle stage").fields[0].distinct == 2
    assert _criterion(report, "Job function").fields[0].filled == 4
    potential = _criterion(report, "Expansion potential")
    assert (potential.status, potential.suggested_property, potential.fields) == (
        NEEDS_CREATION,
        "expansion_potential",
        [],
    )


def test_a_criterion_mapped_to_no_existing_field_needs_creation(crm):
    Criterion.objects.create(name="Buying committee role", layer="demographic", fields=["props.committee_role"])

    criterion = _criterion(coverage_report(), "Buying committee role")

    assert criterion.status == NEEDS_CREATION
    assert criterion.unknown_paths == ["props.committee_role"]


def test_fields_list_the_segments_that_read_them_with_members_and_unclassified(crm):
    report = coverage_report()

    job = _criterion(report, "Job function").fields[0]
    (reading,) = job.readers
    assert reading.name == "MQL engineers"
    # members: the 2 MQL engineers (contacts 0 and 2), both with a job function
    assert (reading.members, reading.members_filled) == (2, 2)
    # its scope is the 5 MQLs (contacts 0, 2, 4, 6, 8): 3 have no job function
    assert reading.unclassified == 3
    stage = _criterion(report, "Lifecycle stage").fields[0]
    assert [(r.name, r.members, r.unclassified) for r in stage.readers] == [("MQLs", 5, 0)]


def test_a_property_read_by_a_rule_outside_the_plan_is_listed_with_its_source(crm):
    report = coverage_report()

    (budget,) = [f for f in report.other_fields if f.path == "props.budget"]
    assert (budget.filled, budget.source) == (2, PropertySource.ENRICHED)
    # contact 0's budget is 0: a value, but not >= 1000
    assert [(r.name, r.members, r.unclassified) for r in budget.readers] == [("Big budgets", 1, 8)]


def test_top_values_count_each_value(crm):
    assert top_values("company.industry") == [("software", 4), ("retail", 2)]
    with pytest.raises(KeyError):
        top_values("company.shoe_size")


def test_the_report_is_a_fixed_number_of_statements(crm):
    coverage_report()  # warm caches
    with CaptureQueriesContext(connection) as few:
        coverage_report()
    for n in range(5):
        SegmentFactory(rule={"field": "country", "op": "eq", "value": f"D{n}"[:2]})
    PropertyDefinitionFactory(key="fleet_size", type="number")
    Criterion.objects.create(name="Fleet", layer="firmographic", fields=["props.fleet_size"])
    with CaptureQueriesContext(connection) as more:
        coverage_report()

    assert len(more.captured_queries) == len(few.captured_queries)
    scans = [q for q in more.captured_queries if 'FROM "contacts_contact"' in q["sql"]]
    assert len(scans) == 2


def test_the_admin_page_shows_the_report_and_a_fields_top_values(client, ops_user, crm):
    client.force_login(ops_user)
    url = reverse("admin:segments_coverage")

    page = client.get(url).content.decode()
    assert "Criteria coverage" in page
    assert "needs enrichment" in page
    assert "MQL engineers" in page
    assert "props.expansion_potential" in page

    with_values = client.get(url, {"field": "company.industry"}).content.decode()
    assert "Most common values of company.industry" in with_values
    assert "software" in with_values

    bad = client.get(url, {"field": "company.shoe_size"}, follow=True).content.decode()
    assert "?field=company.shoe_size: &#x27;company.shoe_size&#x27; is not a field rules can read." in bad
