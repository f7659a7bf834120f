"""Experiment results in the admin, the API and the CSV, on planted data with a known answer."""

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from activation.experiment_models import Arm, Experiment, ExperimentStatus, Exposure
from activation.experiment_results import experiment_results
from activation.experiments import arm_of, start
from api.models import Scope
from contacts.models import Activity
from segments.models import Membership
from tests.factories import CampaignFactory, CampaignVariantFactory, ContactFactory, SegmentFactory


def planted_experiment(*, specific_rate=(60, 400), generic_rate=(30, 400), days_ago=30):
    """Two slices; in each, `specific_rate` clicks among the segment-specific arm, `generic_rate` among generic."""
    campaign = CampaignFactory(slug="launch")
    segments = [SegmentFactory(slug=f"slice-{n}", name=f"Slice {n}") for n in range(2)]
    for n, segment in enumerate(segments):
        CampaignVariantFactory(campaign=campaign, segment=segment, priority=n + 1)
    experiment = Experiment.objects.create(
        campaign=campaign, name="Launch test", baseline_rate=0.08, minimum_effect=0.05, secondary_metrics=["revenue"]
    )
    experiment.target_segments.set(segments)
    start(experiment)
    exposed_at = timezone.now() - timedelta(days=days_ago)
    contacts = iter(ContactFactory.create_batch(2 * (specific_rate[1] + generic_rate[1])))
    exposures, clicks = [], []
    for segment in segments:
        for arm, (converted, n) in ((Arm.SPECIFIC, specific_rate), (Arm.GENERIC, generic_rate)):
            for i in range(n):
                contact = next(contacts)
                exposures.append(
                    Exposure(experiment=experiment, contact=contact, arm=arm, segment=segment, exposed_at=exposed_at)
                )
                if i < converted:
                    clicks.append(
                        Activity(
                            contact=contact,
                            kind="email_click",
                            campaign="launch",
                            occurred_at=exposed_at + timedelta(days=2),
                        )
                    )
    Exposure.objects.bulk_create(exposures)
    Activity.objects.bulk_create(clicks)
    return experiment


@pytest.mark.django_db
def test_results_compare_each_slice_and_the_pool_with_generic():
    experiment = planted_experiment()

    results = experiment_results(experiment)

    pooled = {row.arm: row for row in results.overall.metrics["click"]}
    assert (pooled[Arm.SPECIFIC].exposed, pooled[Arm.SPECIFIC].outcome) == (800, 120)
    assert (pooled[Arm.GENERIC].exposed, pooled[Arm.GENERIC].outcome) == (800, 60)
    assert pooled[Arm.SPECIFIC].versus_generic.absolute.value == pytest.approx(0.075)
    assert pooled[Arm.GENERIC].versus_generic is None
    assert results.plan.reached
    assert results.decision.startswith("Segment-specific content did better than generic on click-through")
    assert "+7.5 points" in results.decision


@pytest.mark.django_db
def test_an_undecided_result_does_not_claim_the_contents_are_equal():
    experiment = planted_experiment(specific_rate=(31, 400), generic_rate=(30, 400))

    results = experiment_results(experiment)

    assert results.decision.startswith("No difference detected")
    assert "does not show that the two contents perform the same" in results.decision


@pytest.mark.django_db
def test_before_the_planned_sample_the_result_is_provisional():
    experiment = planted_experiment(specific_rate=(20, 40), generic_rate=(5, 40))

    results = experiment_results(experiment)

    assert results.decision.startswith("Provisional: 80 of ")
    assert not results.plan.reached


@pytest.mark.django_db
def test_the_admin_page_shows_decision_table_chart_and_csv(client, ops_user):
    experiment = planted_experiment()
    client.force_login(ops_user)

    page = client.get(reverse("admin:activation_experiment_results", args=[experiment.pk]))
    download = client.get(reverse("admin:activation_experiment_csv", args=[experiment.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert "Segment-specific content did better than generic" in html
    assert 'id="lift-chart"' in html
    assert "+7.50 pts" in html
    rows = list(csv.DictReader(io.StringIO(download.content.decode())))
    assert download["Content-Disposition"].startswith(f'attachment; filename="experiment-{experiment.pk}-results-')
    pooled = next(r for r in rows if (r["slice"], r["metric"], r["arm"]) == ("all", "click", "specific"))
    assert (pooled["exposed"], pooled["outcome"], pooled["lift_vs_generic"]) == ("800", "120", "0.075")
    assert {(r["slice"], r["metric"]) for r in rows} == {
        (s, m) for s in ("all", "slice-0", "slice-1") for m in ("click", "revenue")
    }


@pytest.mark.django_db
def test_the_admin_start_action_names_what_to_fix(client, ops_user):
    campaign = CampaignFactory()
    CampaignVariantFactory(campaign=campaign)
    experiment = Experiment.objects.create(campaign=campaign, name="No targets yet")
    client.force_login(ops_user)

    response = client.post(
        reverse("admin:activation_experiment_changelist"),
        {"action": "start_experiments", "_selected_action": [experiment.pk]},
        follow=True,
    )

    assert "No targets yet was not started: Choose at least one target segment" in response.content.decode()
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.DRAFT


@pytest.mark.django_db
def test_the_admin_form_refuses_a_split_that_does_not_add_up(client, ops_user):
    variant = CampaignVariantFactory()
    client.force_login(ops_user)

    response = client.post(
        reverse("admin:activation_experiment_add"),
        {
            "name": "Bad split",
            "campaign": variant.campaign_id,
            "target_segments": [variant.segment_id],
            "specific_percent": 50,
            "generic_percent": 40,
            "holdout_percent": 0,
            "metric": "click",
            "window_days": 14,
            "baseline_rate": 0.05,
            "minimum_effect": 0.02,
        },
    )

    assert response.status_code == 200
    assert "must add up to 100%: segment-specific 50 + generic 40 + hold-out 0 = 90" in response.content.decode()
    assert not Experiment.objects.exists()


@pytest.mark.django_db
def test_the_api_gives_results_and_csv(api_client, django_assert_max_num_queries):
    experiment = planted_experiment()
    client = api_client(Scope.SEGMENTS_READ)

    with django_assert_max_num_queries(13):  # the key's, the experiment, and results' (two metrics)
        response = client.get(f"/api/v1/experiments/{experiment.pk}/results/")
    download = client.get(f"/api/v1/experiments/{experiment.pk}/results.csv")
    listed = client.get("/api/v1/experiments/")

    body = response.json()
    assert response.status_code == 200
    assert body["decision"].startswith("Segment-specific content did better")
    assert [s["segment"] for s in body["slices"]] == [None, "slice-0", "slice-1"]
    specific = body["slices"][0]["metrics"][0]["arms"][0]
    assert (specific["arm"], specific["exposed"], specific["outcome"]) == ("specific", 800, 120)
    assert specific["versus_generic"]["absolute"]["value"] == pytest.approx(0.075)
    assert download.status_code == 200
    assert download.content.decode().startswith("slice,metric,arm,exposed")
    assert [e["name"] for e in listed.json()["results"]] == ["Launch test"]


@pytest.mark.django_db
def test_the_api_needs_the_segments_read_scope(api_client):
    experiment = planted_experiment(specific_rate=(1, 2), generic_rate=(1, 2))

    response = api_client(Scope.CONTACTS_READ).get(f"/api/v1/experiments/{experiment.pk}/results/")

    assert response.status_code == 403
    assert "'segments:read'" in response.content.decode()


@pytest.mark.django_db
def test_recording_a_send_downloads_each_content_arm_contact_with_its_content(client, ops_user):
    campaign = CampaignFactory(slug="spring", subject="Generic subject")
    segment = SegmentFactory(slug="enterprise")
    CampaignVariantFactory(campaign=campaign, segment=segment, priority=1, subject="=HYPERLINK(1)")
    experiment = Experiment.objects.create(
        campaign=campaign, name="Send", specific_percent=40, generic_percent=40, holdout_percent=20
    )
    experiment.target_segments.set([segment])
    start(experiment)
    contacts = ContactFactory.create_batch(30)
    Membership.objects.bulk_create(Membership(segment=segment, contact=c) for c in contacts)
    client.force_login(ops_user)

    response = client.post(reverse("admin:activation_experiment_send", args=[experiment.pk]))

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    arms = {c.email: arm_of(experiment, c.pk) for c in contacts}
    assert Exposure.objects.filter(experiment=experiment).count() == 30
    assert {r["email"]: r["arm"] for r in rows} == {e: a for e, a in arms.items() if a != Arm.HOLDOUT}
    assert {r["subject"] for r in rows if r["arm"] == "specific"} == {"'=HYPERLINK(1)"}
    assert {r["subject"] for r in rows if r["arm"] == "generic"} == {"Generic subject"}
    assert client.get(reverse("admin:activation_experiment_send", args=[experiment.pk])).status_code == 405
