from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_q.conf import Conf
from django_q.tasks import async_task

from activation import formats
from activation.exports import execute_run, start_run
from activation.models import ExportedMember, ExportRun, ExportRunMember
from activation.run_watch import claim_fields
from activation.tasks import run_activation
from segments.models import Membership
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def _join(segment, *contacts):
    Membership.objects.bulk_create(Membership(segment=segment, contact=c) for c in contacts)


def _leave(segment, *contacts):
    Membership.objects.filter(segment=segment, contact__in=contacts).delete()


def _lines(media: Path, name: str) -> list[str]:
    return (media / name).read_text().splitlines()


def _files(media: Path) -> list[str]:
    return sorted(p.name for p in media.rglob("*") if p.is_file())


def test_a_full_run_writes_every_member_and_records_counts(media):
    activation = ActivationFactory(destination=DestinationFactory(csv_columns=["email"]))
    a, b, c = ContactFactory.create_batch(3)
    c.do_not_contact = True
    c.save()
    _join(activation.segment, a, b, c)

    run = execute_run(start_run(activation).pk)

    assert run.status == "succeeded"
    assert _lines(media, run.file_path) == ["email", a.email, b.email]
    assert (run.members_count, run.suppressed_count, run.exported_count) == (3, 1, 2)
    assert (run.added_count, run.removed_count, run.attempts) == (2, 0, 1)
    assert run.started_at <= run.finished_at
    assert not ExportRunMember.objects.exists()


def test_delta_runs_send_only_adds_and_removes_since_the_last_success(media):
    # given a first delta run that exports everyone
    activation = ActivationFactory(mode="delta", destination=DestinationFactory(csv_columns=["email"]))
    a, b, c, d = ContactFactory.create_batch(4)
    _join(activation.segment, a, b, c)
    first = execute_run(start_run(activation).pk)
    assert _lines(media, first.file_path) == ["email", a.email, b.email, c.email]
    assert _lines(media, first.removed_file_path) == ["email"]

    # when b leaves, d joins and c becomes unreachable
    _leave(activation.segment, b)
    _join(activation.segment, d)
    c.email_status = "bounced"
    c.save()
    second = execute_run(start_run(activation).pk)

    # then only the differences go out
    assert _lines(media, second.file_path) == ["email", d.email]
    assert _lines(media, second.removed_file_path) == ["email", b.email, c.email]
    assert (second.added_count, second.removed_count, second.exported_count) == (1, 2, 1)
    assert set(ExportedMember.objects.values_list("contact_id", flat=True)) == {a.pk, d.pk}

    # and a run with nothing changed sends nothing
    third = execute_run(start_run(activation).pk)
    assert _lines(media, third.file_path) == ["email"]
    assert (third.added_count, third.removed_count) == (0, 0)


def test_a_failed_run_does_not_move_the_delta_base(media, monkeypatch):
    activation = ActivationFactory(mode="delta", destination=DestinationFactory(csv_columns=["email"]))
    a, b = ContactFactory.create_batch(2)
    _join(activation.segment, a)
    execute_run(start_run(activation).pk)
    _join(activation.segment, b)
    monkeypatch.setattr(formats, "_csv_cell", _raise_on_call(1))

    failed = execute_run(start_run(activation).pk)

    assert failed.status == "failed"
    assert set(ExportedMember.objects.values_list("contact_id", flat=True)) == {a.pk}


def _raise_on_call(number: int):
    calls = []
    original = formats._csv_cell

    def cell(contact, column):
        calls.append(contact.pk)
        if len(calls) == number:
            raise RuntimeError(f"disk gone while writing contact {contact.pk}")
        return original(contact, column)

    return cell


def test_a_failure_mid_write_leaves_no_file_and_a_failed_run_that_can_be_rerun(media, monkeypatch):
    # given
    activation = ActivationFactory(destination=DestinationFactory(csv_columns=["email"]))
    contacts = ContactFactory.create_batch(3)
    _join(activation.segment, *contacts)
    monkeypatch.setattr(formats, "_csv_cell", _raise_on_call(2))

    # when
    run = execute_run(start_run(activation).pk)

    # then
    assert run.status == "failed"
    assert run.error == f"RuntimeError: disk gone while writing contact {contacts[1].pk}"
    assert run.file_path == ""
    assert _files(media) == []
    assert not ExportRunMember.objects.exists()

    # when the cause is gone, the same run is simply run again
    monkeypatch.undo()
    rerun = execute_run(run.pk)

    assert rerun.pk == run.pk
    assert (rerun.status, rerun.attempts, rerun.error) == ("succeeded", 2, "")
    assert _lines(media, rerun.file_path) == ["email", *(c.email for c in contacts)]
    assert _files(media) == [Path(rerun.file_path).name]


def test_a_finished_run_is_left_alone_when_executed_again(media):
    activation = ActivationFactory()
    _join(activation.segment, ContactFactory())
    run = execute_run(start_run(activation).pk)

    again = execute_run(run.pk)

    assert (again.status, again.attempts, again.finished_at) == ("succeeded", 1, run.finished_at)


def test_an_audience_below_the_minimum_is_refused_with_the_reason(media):
    destination = DestinationFactory(name="Meta EU", kind="meta_custom_audience", min_audience_size=None)
    activation = ActivationFactory(destination=destination)
    _join(activation.segment, *ContactFactory.create_batch(3))

    run = execute_run(start_run(activation).pk)

    assert run.status == "failed"
    assert run.error == (
        "Audience of 3 members is below the minimum of 100 for Meta Custom Audience file "
        "(destination 'Meta EU'); nothing was exported."
    )
    assert _files(media) == []
    assert not ExportedMember.objects.exists()


def test_the_minimum_audience_size_comes_from_settings_per_kind(settings):
    settings.ACTIVATION_MIN_AUDIENCE_SIZE = {**settings.ACTIVATION_MIN_AUDIENCE_SIZE, "csv": 7}

    assert (
        DestinationFactory.build(kind="linkedin_matched_audience", min_audience_size=None).effective_min_audience_size()
        == 300
    )
    assert DestinationFactory.build(kind="csv", min_audience_size=None).effective_min_audience_size() == 7
    assert DestinationFactory.build(kind="csv", min_audience_size=2).effective_min_audience_size() == 2


def test_two_runs_of_one_activation_never_overlap(media):
    # given a run of this activation already running (claimed by a live worker: this process)
    activation = ActivationFactory()
    _join(activation.segment, ContactFactory())
    busy = start_run(activation)
    ExportRun.objects.filter(pk=busy.pk).update(status="running", started_at=timezone.now(), **claim_fields())

    # when a second run starts
    second = execute_run(start_run(activation).pk)

    # then it refuses to start and says why
    assert second.status == "failed"
    assert second.error == f"Run {busy.pk} of this activation is still running; runs of one activation never overlap."
    assert second.attempts == 0
    busy.refresh_from_db()
    assert busy.status == "running"


def test_a_run_abandoned_by_a_dead_worker_is_failed_and_does_not_block(media, settings):
    activation = ActivationFactory()
    _join(activation.segment, ContactFactory())
    stale = start_run(activation)
    long_ago = timezone.now() - timedelta(seconds=settings.RUN_DEAD_AFTER_SECONDS + 60)
    ExportRun.objects.filter(pk=stale.pk).update(
        status="running", started_at=long_ago, heartbeat_at=long_ago, worker="gone-host:1", attempts=1
    )

    run = execute_run(start_run(activation).pk)

    assert run.status == "succeeded"
    stale.refresh_from_db()
    assert stale.status == "failed"
    assert "did not finish: the worker gone-host:1 stopped: no heartbeat since" in stale.error


def test_a_segment_archived_after_setup_is_not_exported(media):
    activation = ActivationFactory()
    _join(activation.segment, ContactFactory())
    activation.segment.status = "archived"
    activation.segment.save()

    run = execute_run(start_run(activation).pk)

    assert run.status == "failed"
    assert run.error == (
        f"Segment {activation.segment.name!r} is archived; archived segments are not exported "
        "(only the removals of erased contacts are still sent)."
    )


def test_a_destination_missing_a_setting_fails_the_run_with_the_setting_named(media):
    destination = DestinationFactory(name="Hook", kind="webhook", url="https://hooks.example.com/x", secret="")
    activation = ActivationFactory(destination=destination)
    _join(activation.segment, ContactFactory())

    run = execute_run(start_run(activation).pk)

    assert run.status == "failed"
    assert run.error.startswith("Destination 'Hook' is not usable: ")
    assert "secret: A webhook destination needs a signing secret." in run.error


def test_the_scheduled_task_runs_an_enabled_activation_through_django_q(media, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)
    activation = ActivationFactory(destination=DestinationFactory(csv_columns=["email"]))
    contact = ContactFactory()
    _join(activation.segment, contact)

    async_task("activation.tasks.run_activation", activation.pk)

    run = ExportRun.objects.get()
    assert run.status == "succeeded"
    assert _lines(media, run.file_path) == ["email", contact.email]


def test_the_scheduled_task_skips_a_disabled_activation(media):
    activation = ActivationFactory(enabled=False)
    _join(activation.segment, ContactFactory())

    assert run_activation(activation.pk) is None
    assert not ExportRun.objects.exists()
