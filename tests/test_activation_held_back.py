"""Export runs explain themselves: members held back by cause, file names that say what they are, and
the segment page's "Export…" with a run now."""

from pathlib import Path

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from activation.exports import execute_run, start_run
from activation.models import ExportRun
from segments.models import Membership
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory, SegmentFactory

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
    assert [(c["label"], c["count"]) for c in run.held_back] == [
        ("Suppression list of this activation: Opt-out list", 1),
        ("Global suppression list: Legal hold", 1),
        ("Do not contact", 1),
        ("E-mail bounced", 1),
        ("Unsubscribed", 1),
        ("Missing or unusable identifier for the destination", 1),
    ]
    assert (run.members_count, run.suppressed_count, run.skipped_count, run.exported_count) == (7, 4, 1, 2)


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
    assert sum(c["count"] for c in run.held_back) == 5  # the suppressions; delivery never started


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
