"""destinations/, activations/, their runs and export files over the API."""

import pytest
from django_q.conf import Conf

from activation.models import Activation, Destination, ExportRun
from segments.models import Membership
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory, SegmentFactory


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def manager(api_client):
    return api_client("activations:write")


@pytest.fixture
def runner(api_client):
    return api_client("activations:run")


def test_webhook_destination_secret_is_write_only(api_client):
    manager = api_client("activations:write", "activations:internal")
    response = manager.post(
        "/api/v1/destinations/",
        {
            "name": "CRM hook",
            "kind": "webhook",
            "url": "http://127.0.0.1:9/in",
            "is_internal": True,
            "secret": "s3cret",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert "secret" not in response.json()
    assert response.json()["has_secret"] is True
    assert Destination.objects.get().secret == "s3cret"
    listed = manager.get("/api/v1/destinations/").json()["results"][0]
    assert "secret" not in listed

    renamed = manager.patch(f"/api/v1/destinations/{listed['id']}/", {"name": "Hook"}, format="json")
    assert renamed.status_code == 200, renamed.json()
    assert Destination.objects.get().secret == "s3cret"


def test_destination_checks_come_from_the_model(manager):
    response = manager.post("/api/v1/destinations/", {"name": "Hook", "kind": "webhook"}, format="json")

    assert response.status_code == 400
    paths = {e["path"] for e in response.json()["error"]["details"]["errors"]}
    assert {"url", "secret"} <= paths


def test_destination_in_use_cannot_be_deleted(manager):
    activation = ActivationFactory()

    response = manager.delete(f"/api/v1/destinations/{activation.destination_id}/")

    assert response.status_code == 409
    assert activation.name in response.json()["error"]["message"]


def test_activation_crud_by_segment_slug(manager):
    SegmentFactory(slug="hot-leads")
    SegmentFactory(slug="legal-hold", kind="suppression")
    destination = DestinationFactory()

    response = manager.post(
        "/api/v1/activations/",
        {
            "name": "Hot leads to CSV",
            "segment": "hot-leads",
            "destination": destination.pk,
            "suppression_segments": ["legal-hold"],
            "schedule_minutes": 60,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    activation = Activation.objects.get()
    assert activation.schedule is not None  # the model keeps its django-q2 schedule in step
    assert response.json()["suppression_segments"] == ["legal-hold"]
    assert manager.patch(f"/api/v1/activations/{activation.pk}/", {"enabled": False}, format="json").status_code == 200
    assert manager.get("/api/v1/activations/").json()["results"][0]["enabled"] is False
    assert manager.delete(f"/api/v1/activations/{activation.pk}/").status_code == 204


def test_activation_with_unknown_segment_is_a_conflict_naming_it(manager):
    response = manager.post(
        "/api/v1/activations/",
        {"name": "x", "segment": "nope", "destination": DestinationFactory().pk},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["error"]["field"] == "segment"


def test_run_queues_an_export_and_the_run_reports_counts_and_download(
    runner, media, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 runs the queued task in-process
    activation = ActivationFactory(destination=DestinationFactory(csv_columns=["email"]))
    contact = ContactFactory()
    Membership.objects.create(segment=activation.segment, contact=contact)

    with django_capture_on_commit_callbacks(execute=True):
        queued = runner.post(f"/api/v1/activations/{activation.pk}/run/")
    assert queued.status_code == 202, queued.json()
    assert queued.json()["status"] == "queued"

    run = ExportRun.objects.get()
    assert run.status == "succeeded"
    body = runner.get(f"/api/v1/export-runs/{run.pk}/").json()
    assert (body["status"], body["exported_count"]) == ("succeeded", 1)
    download = runner.get(body["download"]["added"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content).decode().splitlines() == ["email", contact.email]
    assert [r["id"] for r in runner.get(f"/api/v1/activations/{activation.pk}/runs/").json()["results"]] == [run.pk]


def test_keys_without_run_scope_see_runs_without_download_links(manager, api_client):
    run = ExportRun.objects.create(activation=ActivationFactory(), mode="full", status="succeeded", file_path="x.csv")

    body = manager.get(f"/api/v1/export-runs/{run.pk}/").json()

    assert body["download"] is None
    response = manager.get(f"/api/v1/export-runs/{run.pk}/download/added/")
    assert response.status_code == 403
    assert "'activations:run'" in response.json()["error"]["message"]
    assert manager.post(f"/api/v1/activations/{run.activation_id}/run/").status_code == 403


def test_running_a_disabled_activation_is_409(runner):
    activation = ActivationFactory(enabled=False)

    response = runner.post(f"/api/v1/activations/{activation.pk}/run/")

    assert response.status_code == 409
    assert "disabled" in response.json()["error"]["message"]


def test_missing_export_file_is_404(runner):
    run = ExportRun.objects.create(activation=ActivationFactory(), mode="full", status="succeeded")

    assert runner.get(f"/api/v1/export-runs/{run.pk}/download/added/").status_code == 404
    assert runner.get(f"/api/v1/export-runs/{run.pk}/download/../../etc/passwd/").status_code == 404


@pytest.mark.parametrize("rows", [5, 50])
def test_activation_lists_have_constant_queries(manager, django_assert_num_queries, rows):
    suppression = SegmentFactory(kind="suppression")
    for _ in range(rows):
        ActivationFactory().suppression_segments.add(suppression)
    manager.get("/api/v1/destinations/")

    with django_assert_num_queries(3):  # key, page, suppression segments prefetch
        assert len(manager.get("/api/v1/activations/", {"page_size": rows}).json()["results"]) == rows
