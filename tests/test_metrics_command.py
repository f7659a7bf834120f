"""compute_metrics command, the django-q2 tasks, the nightly schedule and recompute after writes."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from contacts import changes, tasks
from contacts.models import ContactMetrics, MetricsRun
from tests.factories import ActivityFactory, ContactFactory

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def test_command_prints_the_summary_with_future_activities():
    contact = ContactFactory()
    ActivityFactory(contact=contact, kind="page_view", occurred_at=T - timedelta(days=1))
    ActivityFactory(contact=contact, kind="page_view", occurred_at=T + timedelta(days=1))
    out = StringIO()

    call_command("compute_metrics", "--as-of", "2026-06-01T12:00:00+00:00", stdout=out)

    lines = out.getvalue().splitlines()
    assert "as of:                     2026-06-01T12:00:00+00:00" in lines
    assert "contacts:                  1" in lines
    assert "activities counted:        1" in lines
    assert "future activities ignored: 1" in lines
    assert any(line.startswith("duration:") and line.endswith(" s") for line in lines)
    # where the time went, step by step
    assert any(line.startswith("  summary:") and line.endswith(" s") for line in lines)
    assert ContactMetrics.objects.get(contact=contact).as_of == T


def test_command_refuses_a_bad_as_of():
    with pytest.raises(CommandError, match="--as-of 'last tuesday' is not an ISO datetime"):
        call_command("compute_metrics", "--as-of", "last tuesday")


def test_tasks_compute_everyone_or_the_given_contacts():
    first, _second = ContactFactory.create_batch(2)

    assert "2 contacts" in tasks.compute_all_metrics()
    assert "1 contacts" in tasks.compute_contact_metrics([first.id])

    runs = list(MetricsRun.objects.order_by("id").values_list("full", "contacts"))
    assert runs == [(True, 2), (False, 1)]


def test_changed_contacts_get_their_metrics_recomputed_by_the_catch_up(django_capture_on_commit_callbacks):
    contact, _other = ContactFactory.create_batch(2)

    with django_capture_on_commit_callbacks(execute=True):
        changes.contacts_changed([contact.id])
    tasks.catch_up_task()

    assert list(MetricsRun.objects.values_list("full", "contacts")) == [(False, 1)]
    assert list(ContactMetrics.objects.values_list("contact_id", flat=True)) == [contact.id]


def test_no_recompute_when_recompute_on_write_is_off(settings, django_capture_on_commit_callbacks):
    settings.METRICS_RECOMPUTE_ON_WRITE = False

    with django_capture_on_commit_callbacks(execute=True):
        changes.contacts_changed([ContactFactory().id])
    tasks.catch_up_task()

    assert not MetricsRun.objects.exists()


def test_metrics_listeners_hear_of_a_run_for_everyone_and_readers_of_a_run_for_some(
    django_capture_on_commit_callbacks,
):
    heard, read = [], []
    changes.add_metrics_listener(heard.append)
    changes.add_reader(read.append)
    contact = ContactFactory()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            tasks.compute_contact_metrics([contact.id])
            tasks.compute_all_metrics()
        tasks.catch_up_task()
    finally:
        changes._metrics_listeners.remove(heard.append)
        changes._readers.remove(read.append)

    assert heard == [None]
    assert read == [[contact.id]]


def test_bench_metrics_refuses_a_database_not_named_for_benchmarks():
    with pytest.raises(CommandError, match="bench_metrics"):
        call_command("bench_metrics", "--contacts", "10", "--activities", "10")
