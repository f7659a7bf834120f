"""Deleted and erased contacts leave every destination; an erasure removes their personal data (issue 24).

A contact is followed from an export to every destination kind, through its deletion or erasure,
to the removal rows each destination gets next: the removal file of Meta, Google, LinkedIn, CSV and
direct-mail destinations (what the destination received, read from the snapshot: the contact row
is gone) and a leave event for a webhook.
"""

import hashlib
import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.urls import reverse

from activation.automation_models import AutomationRun, Enrolment, Notification
from activation.exports import execute_run, start_run
from activation.file_scrub import scrub_file
from activation.models import ExportedMember, ExportFileScrub, ExportRun
from contacts.erasure import erase_contacts
from contacts.metrics.compute import compute_metrics
from contacts.models import Activity, Contact, ContactMetrics, LifecycleChange
from segments.models import Membership, MembershipChange
from tests.factories import (
    ActivationFactory,
    ActivityFactory,
    AutomationFactory,
    ContactFactory,
    DealFactory,
    DestinationFactory,
    NurtureSequenceFactory,
    SegmentFactory,
)
from tests.segments_support import run_queued

pytestmark = pytest.mark.django_db

SECRET = "s3cret-for-tests"
FILE_KINDS = ["meta_custom_audience", "google_customer_match", "linkedin_matched_audience", "csv", "direct_mail"]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.ACTIVATION_WEBHOOK_MAX_ATTEMPTS = 1
    return tmp_path


def _person(**fields):
    values = {
        "first_name": "Grace",
        "last_name": "Hopper",
        "phone": "+1 415 555 0123",
        "job_title": "Rear Admiral",
        "street_address": "1 Navy Way",
        "postal_code": "20350",
        "city": "Arlington",
        "region": "Virginia",
        "country": "US",
    }
    return ContactFactory(**{**values, **fields})


@pytest.fixture
def destinations(httpserver):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    made = {kind: DestinationFactory(kind=kind, csv_columns=["email", "first_name", "phone"]) for kind in FILE_KINDS}
    made["webhook"] = DestinationFactory(
        kind="webhook", url=httpserver.url_for("/hook"), secret=SECRET, is_internal=True
    )
    return made


def _activate(destinations, *, mode="delta", contacts=()):
    segment = SegmentFactory(kind="static", rule=None)
    Membership.objects.bulk_create(Membership(segment=segment, contact=contact) for contact in contacts)
    return {kind: ActivationFactory(segment=segment, destination=d, mode=mode) for kind, d in destinations.items()}


def _rows(media: Path, name: str) -> list[list[str]]:
    return [line.split(",") for line in (media / name).read_text().splitlines()[1:]]


def _export_all(activations) -> dict[str, ExportRun]:
    runs = {kind: execute_run(start_run(activation).pk) for kind, activation in activations.items()}
    for kind, run in runs.items():
        assert run.status == "succeeded", (kind, run.error)
    return runs


def _sent_row(media, run, contact_position=0):
    return _rows(media, run.file_path)[contact_position]


def _removal_expectations(media, first_runs) -> dict[str, list[str]]:
    """What each file destination's removal row must be, from the rows it received in `first_runs`."""
    meta, google, linkedin, csv, mail = (_sent_row(media, first_runs[kind]) for kind in FILE_KINDS)
    return {
        # the hashed identifiers exactly as uploaded
        "meta_custom_audience": meta,
        "google_customer_match": google,
        # LinkedIn matches removals on the (hashed) email: names, title and company are left out
        "linkedin_matched_audience": [linkedin[0], *[""] * 4, linkedin[5], *linkedin[6:]],
        # CSV: the identifying columns (email, phone); the name is left out
        "csv": [csv[0], "", csv[2]],
        # a mailing list is keyed by name and address
        "direct_mail": mail,
    }


def _webhook_leaves(httpserver) -> list[list[dict]]:
    bodies = [json.loads(request.get_data()) for request, _ in httpserver.log]
    return [body["members"] for body in bodies if body["action"] == "remove"]


@pytest.mark.parametrize("mode", ["delta", "full"])
def test_a_deleted_contact_is_written_to_the_removal_rows_of_every_destination_kind(
    media, destinations, httpserver, mode
):
    # given: two contacts exported to every kind of destination
    grace, alan = _person(), _person(email="alan@example.com", first_name="Alan", last_name="Turing")
    activations = _activate(destinations, mode=mode, contacts=[grace, alan])
    first = _export_all(activations)
    expected = _removal_expectations(media, first)
    httpserver.clear_log()

    # when: Grace is deleted (the admin's or the API's delete) and every activation runs again
    grace_id = grace.pk
    grace.delete()
    second = _export_all(activations)

    # then: each file destination gets her removal row, the webhook a leave event
    for kind in FILE_KINDS:
        assert second[kind].removed_count == 1, kind
        assert _rows(media, second[kind].removed_file_path) == [expected[kind]], kind
    assert _webhook_leaves(httpserver) == [[{"id": grace_id}]]
    # and the snapshot forgets her once the removal went out
    assert not ExportedMember.objects.filter(contact_id=grace_id).exists()
    assert ExportedMember.objects.filter(contact_id=alan.pk).count() == len(activations)


def test_the_removal_row_is_what_the_destination_received_even_after_the_contact_changed(media, destinations):
    grace = _person()
    activations = _activate({"meta": destinations["meta_custom_audience"]}, contacts=[grace])
    first = _export_all(activations)
    sent = _sent_row(media, first["meta"])

    grace.email = "grace.hopper@navy.example"
    grace.phone = ""
    grace.save()
    Membership.objects.filter(contact=grace).delete()
    second = _export_all(activations)

    assert _rows(media, second["meta"].removed_file_path) == [sent]


def test_erasing_a_contact_removes_personal_data_and_queues_removals_to_every_destination(
    media, destinations, httpserver, ops_user, django_capture_on_commit_callbacks
):
    # given: a contact exported everywhere, with activity, metrics, history, automation, deals, an
    # admin log entry and a skipped-row report naming her
    grace, alan = _person(), _person(email="alan@example.com")
    activations = _activate(destinations, contacts=[grace, alan])
    first = _export_all(activations)
    expected = _removal_expectations(media, first)
    httpserver.clear_log()
    ActivityFactory.create_batch(3, contact=grace, topic="cobol")
    compute_metrics()
    segment = activations["csv"].segment
    change = MembershipChange.objects.create(segment=segment, contact=grace, kind="join", reason="manual")
    automation = AutomationFactory(trigger_segment=segment)
    AutomationRun.objects.create(automation=automation, change=change, contact=grace)
    Enrolment.objects.create(sequence=NurtureSequenceFactory(), contact=grace)
    Notification.objects.create(recipient=ops_user, contact=grace, message=f"{grace} joined {segment}")
    deal = DealFactory(contact=grace, amount=1200, name="Renewal for Grace Hopper")
    other_deal = DealFactory(contact=grace, amount=300, name="Vault add-on")
    grace.lifecycle_stage = "customer"
    grace.save()
    LogEntry.objects.create(
        user=ops_user,
        content_type=ContentType.objects.get_for_model(Contact),
        object_id=str(grace.pk),
        object_repr=str(grace),
        action_flag=CHANGE,
        change_message="Changed phone.",
    )
    report = {"skipped": [{"contact_id": grace.pk, "email": grace.email, "reason": "phone 'x' is invalid"}]}
    ExportRun.objects.filter(pk=first["csv"].pk).update(report={**report, "skipped_total": 1}, skipped_count=1)
    grace_id, email = grace.pk, grace.email

    # when
    with django_capture_on_commit_callbacks(execute=True):
        erasure = erase_contacts([grace_id], by=ops_user)

    # then: nothing personal is left about her
    assert erasure.erased == [grace_id]
    assert not Contact.objects.filter(pk=grace_id).exists()
    for model in (Activity, ContactMetrics, LifecycleChange, Membership, MembershipChange, AutomationRun, Enrolment):
        assert not model.objects.filter(contact_id=grace_id).exists(), model.__name__
    assert not Notification.objects.filter(message__contains="Grace").exists()
    deal.refresh_from_db()
    other_deal.refresh_from_db()
    assert (deal.contact_id, deal.amount, deal.name) == (None, 1200, f"Deal {deal.pk} (contact erased)")
    assert (other_deal.contact_id, other_deal.name) == (None, "Vault add-on")
    entries = LogEntry.objects.filter(object_id=str(grace_id), content_type__model="contact")
    assert all(email not in entry.object_repr and "Grace" not in entry.object_repr for entry in entries)
    assert entries.filter(change_message__contains="Erased").exists()
    assert ExportRun.objects.get(pk=first["csv"].pk).report == {"skipped": [], "skipped_total": 1}
    # and a removal run is queued for every activation that sent her somewhere
    queued = ExportRun.objects.filter(status="queued")
    assert sorted(queued.values_list("activation_id", flat=True)) == sorted(a.pk for a in activations.values())
    assert sorted(erasure.queued_runs) == sorted(queued.values_list("pk", flat=True))

    # when the workers run them
    run_queued("activation.tasks.run_export")

    # then: every destination got her removal row, and no snapshot remembers her
    for kind in FILE_KINDS:
        run = ExportRun.objects.get(activation=activations[kind], pk__in=erasure.queued_runs)
        assert run.status == "succeeded", run.error
        assert _rows(media, run.removed_file_path) == [expected[kind]], kind
    assert _webhook_leaves(httpserver) == [[{"id": grace_id}]]
    assert not ExportedMember.objects.filter(contact_id=grace_id).exists()


def test_operations_erase_contacts_from_the_admin_after_confirming(client, ops_user, sales_user):
    grace, alan = _person(), _person(email="alan@example.com")
    url = reverse("admin:contacts_contact_changelist")
    client.force_login(ops_user)

    asked = client.post(url, {"action": "erase_selected", "_selected_action": [grace.pk]})
    assert asked.status_code == 200
    assert b"cannot be undone" in asked.content
    assert Contact.objects.filter(pk=grace.pk).exists()

    done = client.post(url, {"action": "erase_selected", "_selected_action": [grace.pk], "confirm": "yes"})
    assert done.status_code == 302
    assert list(Contact.objects.values_list("pk", flat=True)) == [alan.pk]

    client.force_login(sales_user)
    refused = client.post(url, {"action": "erase_selected", "_selected_action": [alan.pk], "confirm": "yes"})
    assert refused.status_code in (302, 403)
    assert Contact.objects.filter(pk=alan.pk).exists()


def test_the_api_erases_a_contact_with_the_erase_scope_only(api_client, destinations):
    grace = _person()
    activation = _activate({"meta": destinations["meta_custom_audience"]}, contacts=[grace])["meta"]
    _export_all({"meta": activation})
    url = f"/api/v1/contacts/{grace.pk}/erase/"

    refused = api_client("contacts:write", "contacts:read").post(url)
    assert refused.status_code == 403
    assert "contacts:erase" in refused.json()["error"]["message"]

    response = api_client("contacts:erase").post(url)
    assert response.status_code == 200, response.content
    run = ExportRun.objects.get(status="queued")
    assert response.json() == {"erased": grace.pk, "queued_runs": [run.pk], "webhook_notices": 0}
    assert not Contact.objects.filter(pk=grace.pk).exists()

    missing = api_client("contacts:erase").post(url)
    assert missing.status_code == 404


def test_snapshot_rows_kept_before_removal_rows_were_get_them_from_keep_removal_rows(media, destinations):
    # given: a snapshot written before removal rows were kept
    grace, alan = _person(), _person(email="alan@example.com")
    activations = _activate(destinations, contacts=[grace, alan])
    first = _export_all(activations)
    expected = _removal_expectations(media, first)
    ExportedMember.objects.update(removal=None)

    # when the upgrade command runs, then Grace is deleted
    out = StringIO()
    call_command("keep_removal_rows", stdout=out)
    grace.delete()
    second = _export_all(activations)

    # then every file destination still gets her removal row
    assert f"{2 * len(FILE_KINDS)} removal rows kept in all." in out.getvalue()
    for kind in FILE_KINDS:
        assert _rows(media, second[kind].removed_file_path) == [expected[kind]], kind


def test_erasing_a_contact_whose_snapshot_row_has_no_removal_row_still_removes_it(
    media, destinations, django_capture_on_commit_callbacks
):
    grace = _person()
    activations = _activate({"meta": destinations["meta_custom_audience"]}, contacts=[grace])
    first = _export_all(activations)
    ExportedMember.objects.update(removal=None)

    with django_capture_on_commit_callbacks(execute=True):
        erasure = erase_contacts([grace.pk])
    run_queued("activation.tasks.run_export")

    run = ExportRun.objects.get(pk__in=erasure.queued_runs)
    assert _rows(media, run.removed_file_path) == [_sent_row(media, first["meta"])]


def _lines(media: Path, name: str) -> list[str]:
    return (media / name).read_text().splitlines(keepends=True)


def _files_of(activations) -> dict[str, list[str]]:
    """Every export file the activations' runs keep, relative path -> its lines."""
    runs = ExportRun.objects.filter(activation__in=activations.values())
    return {name: [] for run in runs for name in (run.file_path, run.removed_file_path) if name}


@pytest.mark.parametrize("mode", ["delta", "full"])
def test_erasing_a_contact_rewrites_every_export_file_kept_without_her_rows(
    media, destinations, mode, django_capture_on_commit_callbacks
):
    # given: Grace, Alan and Ada exported to every file destination; Grace and Ada leave (a removal
    # file names both) while Bob joins; then Grace comes back
    files = {kind: destinations[kind] for kind in FILE_KINDS}
    grace, alan = _person(), _person(email="alan@example.com", first_name="Alan", last_name="Turing")
    ada = _person(email="ada@example.com", first_name="Ada", last_name="Lovelace", phone="+1 415 555 0199")
    activations = _activate(files, mode=mode, contacts=[grace, alan, ada])
    first = _export_all(activations)
    segment = activations["csv"].segment
    Membership.objects.filter(contact__in=[grace, ada]).delete()
    Membership.objects.create(segment=segment, contact=_person(email="bob@example.com", first_name="Bob"))
    _export_all(activations)
    Membership.objects.create(segment=segment, contact=grace)
    _export_all(activations)
    expected = _removal_expectations(media, first)
    sent = {kind: ",".join(_sent_row(media, first[kind])) + "\n" for kind in FILE_KINDS}
    removal = {kind: ",".join(expected[kind]) + "\n" for kind in FILE_KINDS}
    before = {name: _lines(media, name) for name in _files_of(activations)}
    hers = {*sent.values(), *removal.values()}
    with_grace = {name for name, lines in before.items() if hers.intersection(lines)}
    assert len(with_grace) == 3 * len(FILE_KINDS)  # she is there to be erased

    # when Grace is erased and the workers run what it queued
    with django_capture_on_commit_callbacks(execute=True):
        erasure = erase_contacts([grace.pk])
    run_queued("activation.tasks.run_export")
    assert run_queued("activation.file_scrub.scrub_export_files") == [{"files": len(with_grace), "rows": 15}]

    # then: every file crmseg keeps is what it was without her lines, the erasure run's removal
    # file (meant for the platform) aside
    for kind, activation in activations.items():
        erasure_run = ExportRun.objects.get(activation=activation, pk__in=erasure.queued_runs)
        assert _lines(media, erasure_run.removed_file_path)[1:] == [removal[kind]], kind
        for name, lines in before.items():
            if name.startswith(f"exports/activation-{activation.pk}/"):
                kept = [line for line in lines if line not in (sent[kind], removal[kind])]
                assert _lines(media, name) == kept, name
                assert kept[0] == lines[0]  # a file left with no rows keeps its header
    assert not ExportFileScrub.objects.exists()
    # and each run's stored size and hash are the file's, the files readable by the service user only
    for run in ExportRun.objects.filter(activation__in=activations.values()):
        for name, size, sha in (
            (run.file_path, run.file_size, run.file_sha256),
            (run.removed_file_path, run.removed_file_size, run.removed_file_sha256),
        ):
            if name:
                data = (media / name).read_bytes()
                assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest()), name
                assert (media / name).stat().st_mode & 0o777 == 0o600, name


def test_a_scrub_matches_quoted_and_guarded_cells_and_never_a_row_without_identifiers(tmp_path):
    path = tmp_path / "run.csv"
    path.write_text('email,first_name,phone\ngrace@example.com,"\'=Hopper, G",+14155550123\nalan@example.com,Alan,\n')
    assert scrub_file(path, [["", "", ""]]) is None
    assert scrub_file(path, [["nobody@example.com", "", ""]]) is None

    size, sha, removed = scrub_file(path, [["grace@example.com", "'=Hopper, G", ""]])

    assert path.read_text() == "email,first_name,phone\nalan@example.com,Alan,\n"
    assert (size, sha, removed) == (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest(), 1)


def test_files_of_an_activation_the_contact_had_left_lose_her_rows_too(
    media, destinations, django_capture_on_commit_callbacks
):
    # given: Grace exported everywhere, then out of the segment (recorded in its history) and removed
    files = {kind: destinations[kind] for kind in FILE_KINDS}
    grace, alan = _person(), _person(email="alan@example.com", first_name="Alan", last_name="Turing")
    activations = _activate(files, contacts=[grace, alan])
    first = _export_all(activations)
    segment = activations["csv"].segment
    Membership.objects.filter(contact=grace).delete()
    MembershipChange.objects.create(segment=segment, contact=grace, kind="leave", reason="manual")
    second = _export_all(activations)
    assert not ExportedMember.objects.filter(contact_id=grace.pk).exists()
    alan_lines = {kind: _lines(media, first[kind].file_path)[2] for kind in FILE_KINDS}

    # when she is erased: no removal run is needed, but her lines are still on disk
    with django_capture_on_commit_callbacks(execute=True):
        erasure = erase_contacts([grace.pk])
    assert erasure.queued_runs == []
    run_queued("activation.file_scrub.scrub_export_files")

    # then both runs' files hold only their headers and Alan
    for kind in FILE_KINDS:
        assert _lines(media, first[kind].file_path)[1:] == [alan_lines[kind]], kind
        assert _lines(media, second[kind].removed_file_path)[1:] == [], kind


@pytest.mark.parametrize("mode", ["delta", "full"])
def test_an_archived_segments_destinations_still_get_the_removals_of_erased_contacts(
    media, destinations, httpserver, mode
):
    # given: two contacts exported to every kind of destination, then the segment archived
    grace, alan = _person(), _person(email="alan@example.com", first_name="Alan", last_name="Turing")
    activations = _activate(destinations, mode=mode, contacts=[grace, alan])
    expected = _removal_expectations(media, _export_all(activations))
    segment = activations["csv"].segment
    segment.status = "archived"
    segment.save()
    httpserver.clear_log()
    # an archived segment is not exported...
    refused = execute_run(start_run(activations["csv"]).pk)
    assert (refused.status, refused.exported_count) == ("failed", 0)
    assert "archived" in refused.error

    # when: Grace is erased; the runs the erasure queued go out
    grace_id = grace.pk
    erasure = erase_contacts([grace_id])
    runs = {kind: execute_run(run_id) for kind, run_id in zip(activations, erasure.queued_runs, strict=True)}

    # then: ...but her removal reaches every destination, nobody is added, Alan stays where he is
    for kind, run in runs.items():
        assert (run.status, run.exported_count, run.removed_count) == ("succeeded", 0, 1), (kind, run.error)
        assert not run.file_path, kind
    for kind in FILE_KINDS:
        assert _rows(media, runs[kind].removed_file_path) == [expected[kind]], kind
    assert _webhook_leaves(httpserver) == [[{"id": grace_id}]]
    assert not ExportedMember.objects.filter(contact_id=grace_id).exists()
    assert ExportedMember.objects.filter(contact_id=alan.pk).count() == len(activations)
