from pathlib import Path

import pytest
from django.urls import reverse
from django_q.conf import Conf
from django_q.models import Schedule

from activation.exports import execute_run, start_run
from activation.models import Activation, Destination, ExportRun
from segments.models import Membership
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory, SegmentFactory

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://93.184.216.34/hook"  # a public address literal: no DNS needed


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def ops(client, ops_user):
    client.force_login(ops_user)
    return client


def _destination_form(**overrides) -> dict:
    return {
        "name": "Partner hook",
        "kind": "webhook",
        "min_audience_size": "",
        "csv_columns": "",
        "url": PUBLIC_URL,
        "secret": "",
        "batch_size": "1000",
        **overrides,
    }


def test_a_saved_secret_is_never_shown_back_and_an_empty_box_keeps_it(ops):
    # given a destination saved with a secret
    response = ops.post(reverse("admin:activation_destination_add"), _destination_form(secret="topsecret-123"))
    assert response.status_code == 302, response.content.decode()
    destination = Destination.objects.get()
    assert destination.secret == "topsecret-123"
    change_url = reverse("admin:activation_destination_change", args=[destination.pk])

    # when the change page is shown, the secret is nowhere in it
    page = ops.get(change_url).content.decode()
    assert "topsecret-123" not in page
    assert 'type="password" name="secret"' in page

    # when saved with the box left empty, the secret stays
    ops.post(change_url, _destination_form(batch_size="500"))
    destination.refresh_from_db()
    assert (destination.secret, destination.batch_size) == ("topsecret-123", 500)

    # when a new secret is typed, it replaces the old one
    ops.post(change_url, _destination_form(secret="rotated-456"))
    destination.refresh_from_db()
    assert destination.secret == "rotated-456"
    assert "rotated-456" not in ops.get(change_url).content.decode()


def test_the_destination_list_shows_whether_a_secret_is_set_not_the_secret(ops):
    DestinationFactory(kind="webhook", url=PUBLIC_URL, secret="list-secret-789")

    page = ops.get(reverse("admin:activation_destination_changelist")).content.decode()

    assert "list-secret-789" not in page
    assert "icon-yes.svg" in page


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "http://93.184.216.34/hook", "secret": "k"}, "must use https (plain http only for internal"),
        ({"url": "https://10.0.0.5/hook", "secret": "k"}, "resolves to 10.0.0.5, a loopback, private, link-local"),
        ({"secret": ""}, "A webhook destination needs a signing secret."),
        ({"url": "", "secret": "k"}, "A webhook destination needs an HTTPS URL."),
        (
            {"kind": "csv", "csv_columns": '["email", "shoe_size"]'},
            "Unknown CSV column &#x27;shoe_size&#x27; at position 2 (allowed: id, email,",
        ),
        ({"kind": "csv", "csv_columns": "[]"}, "Choose at least one CSV column"),
    ],
)
def test_bad_destination_settings_are_refused_with_a_clear_message(ops, overrides, message):
    response = ops.post(reverse("admin:activation_destination_add"), _destination_form(**overrides))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Destination.objects.exists()


def test_an_activation_on_an_archived_segment_is_refused_in_the_admin(ops):
    segment = SegmentFactory(name="Spring 2019", status="archived")
    destination = DestinationFactory()

    response = ops.post(
        reverse("admin:activation_activation_add"),
        {"name": "Old", "segment": segment.pk, "destination": destination.pk, "mode": "full", "enabled": "on"},
    )

    assert response.status_code == 200
    assert (
        "Segment &#x27;Spring 2019&#x27; is archived; activate it or choose another segment."
        in response.content.decode()
    )
    assert not Activation.objects.exists()


def test_export_now_queues_a_run_that_the_worker_executes(
    ops, ops_user, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)
    activation = ActivationFactory(destination=DestinationFactory(csv_columns=["email"]))
    contact = ContactFactory()
    Membership.objects.create(segment=activation.segment, contact=contact)

    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(
            reverse("admin:activation_activation_changelist"),
            {"action": "export_now", "_selected_action": [activation.pk]},
            follow=True,
        )

    run = ExportRun.objects.get()
    assert (run.status, run.requested_by, run.exported_count) == ("succeeded", ops_user, 1)
    assert f"Export queued: {activation} (run {run.pk})" in response.content.decode()


def test_a_failed_run_can_be_run_again_from_the_admin(ops, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(Conf, "SYNC", True)
    activation = ActivationFactory(segment=SegmentFactory(status="archived"))
    Membership.objects.create(segment=activation.segment, contact=ContactFactory())
    run = execute_run(start_run(activation).pk)
    assert run.status == "failed"
    activation.segment.status = "active"
    activation.segment.save()

    with django_capture_on_commit_callbacks(execute=True):
        ops.post(reverse("admin:activation_exportrun_changelist"), {"action": "retry", "_selected_action": [run.pk]})

    run.refresh_from_db()
    assert (run.status, run.attempts) == ("succeeded", 2)


def _finished_run(media: Path) -> ExportRun:
    activation = ActivationFactory(destination=DestinationFactory(csv_columns=["email"]))
    contact = ContactFactory(email="staff-only@example.com")
    Membership.objects.create(segment=activation.segment, contact=contact)
    return execute_run(start_run(activation).pk)


def test_staff_download_the_export_file(ops, media):
    run = _finished_run(media)

    response = ops.get(reverse("admin:activation_exportrun_download", args=[run.pk, "added"]))

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"email\nstaff-only@example.com\n"
    assert response["Content-Disposition"] == f'attachment; filename="{Path(run.file_path).name}"'


def test_anonymous_visitors_are_sent_to_log_in_for_an_export_file(client, media):
    run = _finished_run(media)

    response = client.get(reverse("admin:activation_exportrun_download", args=[run.pk, "added"]))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_sales_reps_cannot_download_export_files(client, sales_user, media):
    run = _finished_run(media)
    client.force_login(sales_user)

    response = client.get(reverse("admin:activation_exportrun_download", args=[run.pk, "added"]))

    assert response.status_code == 403
    assert b"staff-only@example.com" not in response.content


def test_a_download_cannot_leave_the_media_root(ops, media, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret.txt"
    outside.write_text("not yours")
    run = _finished_run(media)
    ExportRun.objects.filter(pk=run.pk).update(file_path=str(Path("..") / outside.parent.name / outside.name))

    response = ops.get(reverse("admin:activation_exportrun_download", args=[run.pk, "added"]))

    assert response.status_code == 404


def test_the_activation_list_runs_a_fixed_number_of_queries(ops, django_assert_max_num_queries):
    for _ in range(5):
        activation = ActivationFactory()
        start_run(activation)

    with django_assert_max_num_queries(12):
        response = ops.get(reverse("admin:activation_activation_changelist"))

    assert response.status_code == 200
    assert response.content.decode().count("queued ") == 5


def test_deleting_a_run_in_the_admin_deletes_its_file(ops, media):
    run = _finished_run(media)
    file = media / run.file_path
    assert file.is_file()

    response = ops.post(reverse("admin:activation_exportrun_delete", args=[run.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not ExportRun.objects.exists()
    assert not file.exists()


def test_deleting_an_activation_deletes_its_run_files_and_schedule(ops, media):
    run = _finished_run(media)
    activation = run.activation
    activation.schedule_minutes = 60
    activation.save()
    file = media / run.file_path

    ops.post(
        reverse("admin:activation_activation_changelist"),
        {"action": "delete_selected", "_selected_action": [activation.pk], "post": "yes"},
    )

    assert not Activation.objects.exists()
    assert not file.exists()
    assert not Schedule.objects.filter(name=f"activation-{activation.pk}").exists()
