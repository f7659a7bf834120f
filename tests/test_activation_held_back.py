"""Export runs explain themselves: members held back by cause, file names that say what they are, and
the segment page's "Export…" with a run now."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from activation.exports import execute_run, start_run
from activation.held_back import held_back
from activation.models import ExportRun
from contacts.hygiene import check_hygiene
from contacts.models import Contact
from segments.catalog import CATALOG
from segments.models import Membership, Segment
from segments.refresh import refresh_segment
from tests.factories import ActivationFactory, ActivityFactory, ContactFactory, DestinationFactory, SegmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def activation(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path
    segment = SegmentFactory(slug="enterprise-prospects", name="Enterprise prospects")
    opt_out = SegmentFactory(kind="suppression", name="Opt-out list")
    legal = SegmentFactory(kind="suppression", name="Legal hold", is_global=True)
    SegmentFactory(kind="suppression", name="Unused list")  # not this activation's: not listed
    address = {"street_address": "1 Main St", "postal_code": "94105", "city": "San Francisco"}
    people = {
        "fine": ContactFactory(**address),
        "fine_too": ContactFactory(**address),
        "opted_out": ContactFactory(**address),
        "on_hold_and_bounced": ContactFactory(email_status="bounced", **address),
        "do_not_contact": ContactFactory(do_not_contact=True, **address),
        "unsubscribed": ContactFactory(email_status="unsubscribed", **address),
        "no_address": ContactFactory(street_address="", postal_code="", city=""),
    }
    for contact in people.values():
        Membership.objects.create(segment=segment, contact=contact)
    Membership.objects.create(segment=opt_out, contact=people["opted_out"])
    Membership.objects.create(segment=legal, contact=people["on_hold_and_bounced"])
    activation = ActivationFactory(segment=segment, destination=DestinationFactory(kind="direct_mail", name="Mailer"))
    activation.suppression_segments.add(opt_out)
    return activation


def test_a_run_records_why_members_were_held_back_by_cause(activation):
    run = execute_run(start_run(activation).pk)
    assert run.status == "succeeded"
    assert [(c["label"], c["count"]) for c in run.held_back if c["count"] or "segment_id" in c] == [
        ("Suppression list of this activation: Opt-out list", 1),
        ("Do not contact", 1),
        ("Unreachable: Unsubscribed", 1),
        ("Unreachable: Bounced (hard)", 1),  # on legal hold too: counted once, under its first cause
        ("Global suppression list: Legal hold", 0),
        ("Missing or unusable identifier for the destination", 1),
    ]
    assert (run.members_count, run.suppressed_count, run.skipped_count, run.exported_count) == (7, 4, 1, 2)
    assert sum(c["count"] for c in run.held_back) == run.suppressed_count + run.skipped_count


def test_the_file_name_says_segment_destination_mode_date_and_run(activation):
    run = execute_run(start_run(activation).pk)
    day = run.created_at.date().isoformat()
    assert Path(run.file_path).name == f"enterprise-prospects_direct-mail_full_{day}_run-{run.pk}.csv"


def test_a_run_below_the_minimum_still_says_who_was_held_back(activation):
    activation.destination.min_audience_size = 100
    activation.destination.save()
    run = execute_run(start_run(activation).pk)
    assert run.status == "failed"
    assert "below the minimum" in run.error
    assert sum(c["count"] for c in run.held_back) == run.suppressed_count == 4  # delivery never started


def test_the_api_and_the_admin_show_the_breakdown(activation, api_client, admin_client):
    run = execute_run(start_run(activation).pk)
    answer = api_client("activations:write").get(reverse("api:export-run", args=[run.pk])).json()
    assert answer["held_back"][0] == {
        "cause": "suppression",
        "label": "Suppression list of this activation: Opt-out list",
        "segment_id": activation.suppression_segments.get().pk,
        "count": 1,
    }
    page = admin_client.get(reverse("admin:activation_exportrun_change", args=[run.pk])).content.decode()
    assert "<tr><td>Global suppression list: Legal hold</td>" in page
    assert "<tr><td>Unreachable: Unsubscribed</td>" in page
    assert "Unreachable: Disposable domain" not in page  # a cause that held no one back is left out


def test_the_segment_export_page_lists_activations_and_runs_now(activation, ops_user, client):
    execute_run(start_run(activation).pk)
    client.force_login(ops_user)
    url = reverse("activation:segment-exports", args=[activation.segment_id])
    page = client.get(url).content.decode()
    assert activation.name in page
    assert "Suppression list of this activation: Opt-out list: <strong>1</strong>" in page
    answer = client.post(reverse("activation:run-now", args=[activation.pk]), follow=True)
    queued = ExportRun.objects.filter(activation=activation, status="queued").get()
    assert f"Export run #{queued.pk} of {activation.name} is queued" in answer.content.decode()
    assert OrmQ.objects.count() == 0  # queued after commit only; the test's transaction never commits


def test_only_those_who_may_change_activations_run_them(activation, sales_user, client, django_user_model):
    client.force_login(sales_user)
    assert client.post(reverse("activation:run-now", args=[activation.pk])).status_code == 403
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    client.force_login(viewer)
    assert client.get(reverse("activation:segment-exports", args=[activation.segment_id])).status_code == 200
    assert client.post(reverse("activation:run-now", args=[activation.pk])).status_code == 403
    assert not ExportRun.objects.exists()


def test_a_disabled_activation_is_not_run(activation, ops_user, client):
    activation.enabled = False
    activation.save()
    client.force_login(ops_user)
    answer = client.post(reverse("activation:run-now", args=[activation.pk]), follow=True)
    assert "is disabled" in answer.content.decode()
    assert not ExportRun.objects.exists()


def _soft_bounced(contact, *, reports: int) -> None:
    now = timezone.now()
    for days in range(1, reports + 1):
        ActivityFactory(contact=contact, kind="email_bounce_soft", occurred_at=now - timedelta(days=days))


def test_contacts_the_unreachable_suppression_holds_back_count_under_the_reason_their_address_fails(tmp_path, settings):
    # given: members whose addresses fail in ways only the hygiene check knows (bounce reports, role
    # address), the catalog's global "unreachable" suppression refreshed after the check, and a
    # reachable member on another global list
    settings.MEDIA_ROOT = tmp_path
    segment = SegmentFactory(name="Prospects")
    people = {
        "fine": ContactFactory(),
        "soft_bounced": ContactFactory(),
        "hard_bounce_report": ContactFactory(),
        "role": ContactFactory(email="info@acme.example"),
        "status_bounced_since_check": ContactFactory(),
        "on_hold": ContactFactory(),
    }
    for contact in people.values():
        Membership.objects.create(segment=segment, contact=contact)
    _soft_bounced(people["soft_bounced"], reports=3)
    ActivityFactory(contact=people["hard_bounce_report"], kind="email_bounce_hard", occurred_at=timezone.now())
    unreachable = Segment.objects.create(**next(e for e in CATALOG if e["slug"] == "suppress-unreachable"))
    legal = SegmentFactory(kind="suppression", name="Legal hold", is_global=True)
    Membership.objects.create(segment=legal, contact=people["on_hold"])
    check_hygiene()
    refresh_segment(unreachable.pk)
    Contact.objects.filter(pk=people["status_bounced_since_check"].pk).update(email_status="bounced")
    activation = ActivationFactory(segment=segment, destination=DestinationFactory(kind="csv", name="File"))

    # when
    run = execute_run(start_run(activation).pk)

    # then
    counts = {c["label"]: c["count"] for c in run.held_back if c["count"]}
    assert counts == {
        "Unreachable: Bounced (hard)": 2,  # the hard bounce report, and the status changed since the check
        "Unreachable: Bounced (soft, repeatedly)": 1,
        "Unreachable: Role address (info@, sales@ ...)": 1,
        "Global suppression list: Legal hold": 1,
    }
    assert (run.members_count, run.suppressed_count, run.exported_count) == (6, 5, 1)
    assert sum(counts.values()) == run.suppressed_count
    labels = [c["label"] for c in run.held_back]
    assert "Global suppression list: Suppress: unreachable" in labels  # listed, holding back no one else


def test_the_causes_are_counted_in_one_statement(activation, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):  # the activation's lists, the suppressing segments, the count
        held_back(activation)
