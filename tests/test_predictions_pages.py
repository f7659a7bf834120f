"""Propensity models from the outside: commands, django-q2 tasks, the admin model page, the
contact page's factors and the API."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_q.models import Schedule

from contacts.models import Contact
from predictions.models import ModelVersion, PropensityModel, PropensityScore, VersionState
from predictions.scoring import score_model
from predictions.tasks import DAILY_SCHEDULE, models_due
from predictions.training import queue_version, train_version
from segments.refresh import refresh_segment
from tests.factories import SegmentFactory
from tests.predictions_support import NOW, plant_convert
from tests.segments_support import run_queued
from tests.shared_rows import made_once

pytestmark = pytest.mark.django_db
NOW_ISO = NOW.isoformat()


@pytest.fixture(scope="module")
def trained_once(django_db_setup, django_db_blocker) -> int:
    """1,000 planted contacts (with a planted leak), a trained and scored convert model, made once
    for the module (tests/shared_rows.py); the tests that train their own are in
    test_predictions_commands.py."""
    with made_once(django_db_blocker):
        plant_convert(1000, leak=True)
        model = PropensityModel.objects.create(name="convert", target="convert", horizon_days=90)
        train_version(queue_version(model), now=NOW)
        score_model(model, now=NOW)
        yield model.pk


@pytest.fixture
def trained(trained_once, db):
    return PropensityModel.objects.get(pk=trained_once)


def test_score_contacts_prints_what_it_scored(trained):
    out = StringIO()
    call_command("score_contacts", "convert", "--now", NOW_ISO, stdout=out)
    assert f"contacts:  {PropensityScore.objects.count()}" in out.getvalue()
    with pytest.raises(CommandError, match="No model named 'churn'"):
        call_command("score_contacts", "churn")


def test_the_daily_schedule_exists_and_models_come_due(trained):
    assert Schedule.objects.filter(name=DAILY_SCHEDULE, func="predictions.tasks.daily_task").exists()
    version = trained.active_version
    assert models_due(now=version.finished_at) == []
    assert models_due(now=version.finished_at + timedelta(days=31)) == [trained]


def test_the_model_page_shows_validation_charts_and_leaks(client, ops_user, trained):
    client.force_login(ops_user)

    response = client.get(reverse("admin:predictions_propensitymodel_report", args=[trained.pk]))

    html = response.content.decode()
    metrics = trained.active_version.metrics
    assert response.status_code == 200
    assert f"{metrics['auc']:.3f}" in html
    assert 'aria-label="Lift by decile"' in html
    assert 'aria-label="Calibration curve"' in html
    assert "props.final_contract_value" in html
    assert "metrics.propensity_convert_tier" in html
    assert "Top 20% likely to convert" in html or "top 20% likely to convert" in html


def test_the_model_page_queues_a_training_once(client, ops_user, trained):
    client.force_login(ops_user)
    url = reverse("admin:predictions_propensitymodel_report", args=[trained.pk])

    client.post(url, {"action": "train"})
    response = client.post(url, {"action": "train"}, follow=True)

    assert trained.versions.filter(state=VersionState.QUEUED).count() == 1
    assert "already training" in response.content.decode()


def test_sales_cannot_open_the_model_page(client, sales_user, trained):
    client.force_login(sales_user)
    response = client.get(reverse("admin:predictions_propensitymodel_report", args=[trained.pk]))
    assert response.status_code in (302, 403)


def test_the_contact_page_shows_the_score_and_its_factors(client, sales_user, trained):
    score = PropensityScore.objects.filter(model=trained).order_by("-probability").first()
    client.force_login(sales_user)

    response = client.get(reverse("contacts-detail", args=[score.contact_id]))

    html = response.content.decode()
    assert "Likely to convert: Very high" in html
    assert "pricing page views in last 365 days: <strong>" in html
    assert "seniority" in html
    assert "Factors lowering the convert score" in html or "Factors raising the convert score" in html


def test_the_api_lists_models_and_reads_a_contacts_factors(api_client, trained):
    segments = api_client("segments:read")
    listed = segments.get("/api/v1/models/").json()["results"]
    assert [m["name"] for m in listed] == ["convert"]
    assert listed[0]["active_version"]["metrics"]["auc"] == trained.active_version.metrics["auc"]

    detail = segments.get("/api/v1/models/convert/").json()
    assert detail["active_version"]["leakage"][0]["feature"] == "props.final_contract_value"
    assert len(detail["active_version"]["metrics"]["lift"]) == 10
    assert segments.get("/api/v1/models/nope/").status_code == 404

    score = PropensityScore.objects.filter(model=trained).order_by("-probability").first()
    contacts = api_client("contacts:read")
    body = contacts.get(f"/api/v1/contacts/{score.contact_id}/scores/").json()
    assert body["scores"][0]["probability"] == score.probability
    assert body["scores"][0]["tier"] == "very_high"
    assert body["scores"][0]["up"][0]["direction"] == "+"
    assert segments.get(f"/api/v1/contacts/{score.contact_id}/scores/").status_code == 403
    assert contacts.get("/api/v1/contacts/999999/scores/").status_code == 404


def test_a_contact_outside_every_model_has_no_scores(api_client, trained):
    customer = Contact.objects.filter(lifecycle_stage="customer").first()
    body = api_client("contacts:read").get(f"/api/v1/contacts/{customer.pk}/scores/").json()
    assert body["scores"] == []


def test_segment_members_and_the_explain_api_show_the_score_behind_a_score_rule(client, ops_user, api_client, trained):
    segment = SegmentFactory(
        slug="likely-converters", rule={"field": "metrics.propensity_convert", "op": "top_percent", "value": 20}
    )
    refresh_segment(segment.pk)
    member = segment.memberships.order_by("contact_id").first()
    client.force_login(ops_user)

    html = client.get(reverse("segments-detail", args=[segment.pk])).content.decode()

    assert '<th scope="col">Likely to convert</th>' in html
    assert "Very high · " in html
    body = api_client("segments:read", "contacts:read").get(f"/api/v1/contacts/{member.contact_id}/segments/?explain=1")
    item = next(i for i in body.json() if i["slug"] == "likely-converters")
    assert item["explanation"]["result"] is True
    assert item["propensity"][0]["model"] == "convert"
    assert item["propensity"][0]["up"]


def test_operations_activate_a_version_kept_for_review_and_its_scores_follow(
    client, ops_user, trained, django_capture_on_commit_callbacks
):
    # given: version 1 active (its AUC recorded above what version 2 reaches, as after a leak), so
    # version 2 is kept for review by the AUC guard
    v1 = trained.active_version
    ModelVersion.objects.filter(pk=v1.pk).update(metrics={**v1.metrics, "auc": 0.999})
    v2 = queue_version(trained)
    train_version(v2, now=NOW)
    v2.refresh_from_db()
    assert (v2.state, v2.is_active) == (VersionState.REVIEW, False)
    client.force_login(ops_user)
    url = reverse("admin:predictions_propensitymodel_report", args=[trained.pk])
    assert 'value="Activate v2"' in client.get(url).content.decode()

    # when: an operator activates version 2 on the model page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"action": "activate", "version": "2"}, follow=True)

    # then: it scores from now on, version 1 is retired and can be brought back the same way
    html = response.content.decode()
    assert "Version 2 of convert is active instead of version 1; scoring queued." in html
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v2.state, v2.is_active, v1.state, v1.is_active) == ("active", True, "retired", False)
    assert v2.message.startswith("Activated by ops on ")
    assert 'value="Activate v1"' in html
    assert 'value="Activate v2"' not in html
    assert run_queued("predictions.tasks.score_task")
    assert PropensityScore.objects.filter(model=trained).exclude(version=v2).count() == 0
    assert PropensityScore.objects.filter(model=trained, version=v2).exists()


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("1", "only a version kept for review or a retired one can be activated"),
        ("9", "Model convert has no version 9."),
    ],
)
def test_activating_the_active_or_a_missing_version_is_refused(client, ops_user, trained, number, message):
    client.force_login(ops_user)
    url = reverse("admin:predictions_propensitymodel_report", args=[trained.pk])

    response = client.post(url, {"action": "activate", "version": number}, follow=True)

    html = response.content.decode()
    assert message in html, html[html.find('<ul class="messagelist') :][:400]
    assert trained.active_version.number == 1


def test_a_version_whose_model_no_longer_loads_is_not_activated(client, ops_user, trained):
    v2 = queue_version(trained)
    train_version(v2, now=NOW)
    ModelVersion.objects.filter(pk=trained.active_version.pk).update(is_active=False, state=VersionState.RETIRED)
    ModelVersion.objects.filter(pk=v2.pk).update(is_active=True, state=VersionState.ACTIVE)
    ModelVersion.objects.filter(number=1, model=trained).update(artifact_signature="0" * 64)
    client.force_login(ops_user)
    url = reverse("admin:predictions_propensitymodel_report", args=[trained.pk])

    response = client.post(url, {"action": "activate", "version": "1"}, follow=True)

    assert "The model of version 1 does not load" in response.content.decode()
    assert trained.active_version.number == 2


def test_sales_cannot_activate_a_version(client, sales_user, trained):
    client.force_login(sales_user)
    url = reverse("admin:predictions_propensitymodel_report", args=[trained.pk])

    response = client.post(url, {"action": "activate", "version": "1"})

    assert response.status_code in (302, 403)
    assert trained.active_version.number == 1
