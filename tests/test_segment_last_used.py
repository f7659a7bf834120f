"""The segments overview says when each segment was last used: its last export (as the audience or
as a suppression), the last member change an automation acted on, or its last API read."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from activation.automation_models import AutomationRun
from activation.models import ExportRun
from segments.models import MembershipChange
from tests.factories import ActivationFactory, AutomationFactory, ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


@pytest.fixture
def ops_client(client, ops_user):
    client.force_login(ops_user)
    return client


def last_used_cells(response) -> dict[str, str]:
    return {
        node.segment.slug: (node.last_used.what if node.last_used else "never") for node in response.context["rows"]
    }


def exported(segment, *, days_ago: int, suppression=None):
    activation = ActivationFactory(segment=segment)
    if suppression is not None:
        activation.suppression_segments.add(suppression)
    ExportRun.objects.create(
        activation=activation, mode="full", status="succeeded", finished_at=NOW - timedelta(days=days_ago)
    )


def acted_on(segment, *, days_ago: int):
    automation = AutomationFactory(trigger_segment=segment)
    contact = ContactFactory()
    change = MembershipChange.objects.create(
        segment=segment, contact=contact, kind="join", reason="rule", changed_at=NOW - timedelta(days=days_ago)
    )
    AutomationRun.objects.create(automation=automation, change=change, contact=contact)


def test_the_overview_shows_the_latest_use_of_each_segment(ops_client):
    exports = SegmentFactory(slug="exports")
    exported(exports, days_ago=3)
    opt_out = SegmentFactory(slug="opt-out", kind="suppression_list", rule=None)
    exported(SegmentFactory(slug="audience"), days_ago=5, suppression=opt_out)
    nurtured = SegmentFactory(slug="nurtured")
    acted_on(nurtured, days_ago=2)
    exported(nurtured, days_ago=9)  # older than the automation's
    SegmentFactory(slug="read", last_api_read_at=NOW - timedelta(days=1))
    SegmentFactory(slug="idle")

    response = ops_client.get(reverse("segments-overview"), {"sort": "-used"})

    assert last_used_cells(response) == {
        "read": "API read",
        "nurtured": "automation",
        "exports": "export",
        "opt-out": "export",
        "audience": "export",
        "idle": "never",
    }
    assert [node.segment.slug for node in response.context["rows"]][:3] == ["read", "nurtured", "exports"]
    assert "Last used" in response.text


def test_last_used_costs_the_same_statements_for_more_segments(ops_client, django_assert_max_num_queries):
    for n in range(2):
        segment = SegmentFactory(slug=f"a{n}")
        exported(segment, days_ago=n + 1)
        acted_on(segment, days_ago=n + 2)
    with django_assert_max_num_queries(40) as few:
        ops_client.get(reverse("segments-overview"))
    for n in range(6):
        segment = SegmentFactory(slug=f"b{n}")
        exported(segment, days_ago=n + 1)
        acted_on(segment, days_ago=n + 2)

    with django_assert_max_num_queries(len(few.captured_queries)):
        ops_client.get(reverse("segments-overview"))
