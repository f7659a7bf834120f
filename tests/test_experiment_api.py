"""Setting up experiments through the API: create a draft, edit, start, stop, clone, and the
refusals a client must be told about by field (issue 18 items 1 and 6, "Bad input")."""

import pytest

from activation.experiment_models import Experiment, ExperimentStatus, Exposure
from api.models import Scope
from tests.factories import CampaignFactory, CampaignVariantFactory, ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/experiments/"


@pytest.fixture
def campaign():
    campaign = CampaignFactory(slug="spring-launch", active=True)
    for n, slug in enumerate(["cloud-buyers", "security-buyers"]):
        CampaignVariantFactory(campaign=campaign, segment=SegmentFactory(slug=slug), priority=n + 1)
    return campaign


@pytest.fixture
def writer(api_client):
    return api_client(Scope.SEGMENTS_READ, Scope.ACTIVATIONS_WRITE)


def design(**changes) -> dict:
    return {
        "name": "Spring test",
        "campaign": "spring-launch",
        "target_segments": ["cloud-buyers", "security-buyers"],
        "specific_percent": 45,
        "generic_percent": 45,
        "holdout_percent": 10,
        "metric": "click",
        "secondary_metrics": ["deal_won"],
        "window_days": 21,
        **changes,
    }


def error(response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["field"], body["message"]


def test_a_client_creates_starts_stops_and_clones_an_experiment(writer, campaign):
    created = writer.post(URL, design(), format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["status"], body["campaign"], body["window_days"]) == ("draft", "spring-launch", 21)
    assert sorted(body["target_segments"]) == ["cloud-buyers", "security-buyers"]
    experiment = Experiment.objects.get(pk=body["id"])
    assert (experiment.specific_percent, experiment.holdout_percent, experiment.secondary_metrics) == (
        45, 10, ["deal_won"],
    )  # fmt: skip

    started = writer.post(f"{URL}{experiment.pk}/start/")
    assert started.status_code == 200
    assert started.json()["status"] == "running"
    assert started.json()["started_at"]
    stopped = writer.post(f"{URL}{experiment.pk}/stop/")
    assert stopped.json()["status"] == "stopped"

    copy = writer.post(f"{URL}{experiment.pk}/clone/")
    assert copy.status_code == 201
    assert (copy.json()["status"], copy.json()["name"]) == ("draft", "Spring test (copy)")
    assert Experiment.objects.get(pk=copy.json()["id"]).salt != experiment.salt  # its own assignment


@pytest.mark.parametrize(
    ("changes", "status", "field", "says"),
    [
        ({"holdout_percent": 20}, 400, "holdout_percent", "must add up to 100%"),
        ({"specific_percent": 0, "generic_percent": 90}, 400, "specific_percent", "Both content arms"),
        ({"window_days": 0}, 400, "window_days", "greater than or equal to 1"),
        ({"target_segments": []}, 400, "target_segments", "Choose at least one target segment"),
        ({"campaign": "no-such-campaign"}, 409, "campaign", "does not exist"),
        ({"secondary_metrics": ["opens"]}, 400, "secondary_metrics[0]", "not a valid choice"),
        ({"colour": "blue"}, 400, "colour", "Unknown field"),
    ],
)
def test_a_bad_design_is_refused_naming_the_field_and_nothing_is_stored(writer, campaign, changes, status, field, says):
    response = writer.post(URL, design(**changes), format="json")

    assert error(response)[:2] == (status, field), response.content
    assert says in error(response)[2]
    assert not Experiment.objects.exists()


def test_a_target_without_a_variant_or_a_campaign_without_variants_is_refused(writer, campaign):
    SegmentFactory(slug="no-variant", name="No variant")
    CampaignFactory(slug="plain")

    missing = writer.post(URL, design(target_segments=["cloud-buyers", "no-variant"]), format="json")
    plain = writer.post(URL, design(campaign="plain", target_segments=["cloud-buyers"]), format="json")
    not_suppression = writer.post(URL, design(suppression_segments=["cloud-buyers"]), format="json")

    assert error(missing)[:2] == (400, "target_segments")
    assert "'No variant' has no variant in this campaign" in error(missing)[2]
    assert error(plain)[:2] == (400, "campaign")
    assert "has no segment variants" in error(plain)[2]
    assert error(not_suppression) == (
        400, "suppression_segments", "suppression_segments: Not a suppression segment or list: cloud-buyers.",
    )  # fmt: skip
    assert not Experiment.objects.exists()


def test_the_design_is_frozen_after_the_first_exposure_but_the_name_is_not(writer, campaign):
    experiment_id = writer.post(URL, design(), format="json").json()["id"]
    writer.post(f"{URL}{experiment_id}/start/")
    Exposure.objects.create(
        experiment_id=experiment_id, contact=ContactFactory(), arm="generic",
        segment=campaign.variants.first().segment,
    )  # fmt: skip

    split = writer.patch(f"{URL}{experiment_id}/", {"specific_percent": 55, "generic_percent": 35}, format="json")
    renamed = writer.patch(f"{URL}{experiment_id}/", {"name": "Spring test, Q2"}, format="json")

    assert error(split)[:2] == (409, "specific_percent")
    assert "Clone the experiment" in error(split)[2]
    assert renamed.status_code == 200
    experiment = Experiment.objects.get(pk=experiment_id)
    assert (experiment.name, experiment.specific_percent) == ("Spring test, Q2", 45)


def test_a_second_running_experiment_on_the_campaign_is_refused_by_field(writer, campaign):
    first = writer.post(URL, design(), format="json").json()["id"]
    second = writer.post(URL, design(name="Other"), format="json").json()["id"]
    writer.post(f"{URL}{first}/start/")

    response = writer.post(f"{URL}{second}/start/")

    assert error(response)[:2] == (409, "campaign")
    assert "'Spring test' is already running" in error(response)[2]
    assert Experiment.objects.get(pk=second).status == ExperimentStatus.DRAFT


def test_changing_experiments_needs_the_activations_write_scope(api_client, campaign):
    reader = api_client(Scope.SEGMENTS_READ)

    assert reader.post(URL, design(), format="json").status_code == 403
    assert reader.get(URL).status_code == 200
    assert not Experiment.objects.exists()
