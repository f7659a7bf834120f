import hashlib
import hmac
import json
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule

from activation.automations import claim_runs, enqueue_processing, process_pending
from activation.models import (
    Automation,
    AutomationAction,
    AutomationRun,
    Enrolment,
    Notification,
)
from contacts.models import Contact
from crmseg_site.schedules import ensure_schedules
from segments.events import memberships_changed
from segments.models import Membership, MembershipChange
from segments.refresh import refresh_segment
from segments.static import add_static_members
from tests.factories import (
    AutomationFactory,
    ContactFactory,
    DestinationFactory,
    NurtureSequenceFactory,
    SegmentFactory,
    UserFactory,
)


def join(segment, *contacts):
    for contact in contacts:
        Membership.objects.get_or_create(segment=segment, contact=contact)
    MembershipChange.objects.bulk_create(
        [MembershipChange(segment=segment, contact=c, kind="join", reason="rule") for c in contacts]
    )


def leave(segment, *contacts):
    Membership.objects.filter(segment=segment, contact__in=contacts).delete()
    MembershipChange.objects.bulk_create(
        [MembershipChange(segment=segment, contact=c, kind="leave", reason="rule") for c in contacts]
    )


def automation_with(*actions, **kwargs):
    automation = AutomationFactory(**kwargs)
    for position, action in enumerate(actions):
        AutomationAction.objects.create(automation=automation, position=position, **action)
    return automation


def score(contact):
    return Contact.objects.get(pk=contact.pk).lead_score


@pytest.mark.django_db
def test_joining_adjusts_lead_score_once_however_often_it_runs():
    automation = automation_with({"kind": "adjust_score", "score_delta": 15})
    ada, bob = ContactFactory(lead_score=5), ContactFactory(lead_score=0)
    join(automation.trigger_segment, ada, bob)

    first = process_pending()
    second = process_pending()

    assert (first.discovered, first.done) == (2, 2)
    assert (second.discovered, second.claimed) == (0, 0)
    assert (score(ada), score(bob)) == (20, 15)
    assert set(AutomationRun.objects.values_list("status", flat=True)) == {"done"}


@pytest.mark.django_db
def test_negative_delta_lowers_score_and_each_change_counts():
    automation = automation_with({"kind": "adjust_score", "score_delta": -3}, trigger="leave")
    ada = ContactFactory(lead_score=10)
    join(automation.trigger_segment, ada)
    leave(automation.trigger_segment, ada)
    join(automation.trigger_segment, ada)
    leave(automation.trigger_segment, ada)

    process_pending()

    assert score(ada) == 4
    assert AutomationRun.objects.filter(contact=ada).count() == 2


@pytest.mark.django_db
def test_changes_before_the_automation_existed_are_not_replayed():
    segment = SegmentFactory()
    old = ContactFactory()
    join(segment, old)
    automation = automation_with({"kind": "adjust_score", "score_delta": 1}, trigger_segment=segment)
    new = ContactFactory()
    join(segment, new)

    process_pending()

    assert (score(old), score(new)) == (0, 1)
    assert AutomationRun.objects.get().contact == new
    assert automation.starts_after_change > 0


@pytest.mark.django_db
def test_disabled_automation_does_nothing():
    automation = automation_with({"kind": "adjust_score", "score_delta": 1}, enabled=False)
    ada = ContactFactory()
    join(automation.trigger_segment, ada)

    assert process_pending().discovered == 0
    assert score(ada) == 0


@pytest.mark.django_db
def test_enrolment_is_one_active_per_contact_and_sequence():
    sequence = NurtureSequenceFactory()
    automation = automation_with({"kind": "enrol", "sequence": sequence})
    ada = ContactFactory()
    join(automation.trigger_segment, ada)
    leave(automation.trigger_segment, ada)
    join(automation.trigger_segment, ada)

    process_pending()

    enrolment = Enrolment.objects.get()
    assert (enrolment.contact, enrolment.sequence, enrolment.status) == (ada, sequence, "active")
    assert enrolment.automation == automation
    assert AutomationRun.objects.filter(status="done").count() == 2


@pytest.mark.django_db
def test_database_refuses_a_second_active_enrolment():
    sequence, ada = NurtureSequenceFactory(), ContactFactory()
    Enrolment.objects.create(sequence=sequence, contact=ada, status="completed")
    Enrolment.objects.create(sequence=sequence, contact=ada)

    with pytest.raises(IntegrityError), transaction.atomic():
        Enrolment.objects.create(sequence=sequence, contact=ada)


@pytest.mark.django_db
def test_owner_gets_an_email_and_a_notification_they_can_see(client):
    owner, stranger = UserFactory(username="owner"), UserFactory(username="stranger")
    automation = automation_with({"kind": "notify_owner"}, name="Hot leads")
    automation.trigger_segment.name = "Enterprise MQLs"
    automation.trigger_segment.save()
    ada = ContactFactory(owner=owner, first_name="Ada", last_name="Lovelace", email="ada@example.com")
    bob = ContactFactory(owner=owner, first_name="Bob", last_name="Byte", email="bob@example.com")
    orphan = ContactFactory(owner=None)
    join(automation.trigger_segment, ada, bob, orphan)

    process_pending()

    [email] = mail.outbox
    assert email.to == ["owner@example.com"]
    assert email.subject == "[crmseg] 2 of your contacts joined Enterprise MQLs"
    assert "Ada Lovelace <ada@example.com>" in email.body
    assert "Bob Byte <bob@example.com>" in email.body
    assert Notification.objects.filter(recipient=owner).count() == 2
    assert not Notification.objects.filter(contact=orphan).exists()
    assert AutomationRun.objects.get(contact=orphan).status == "done"

    client.force_login(owner)
    page = client.get(reverse("activation:notifications"))
    assert page.status_code == 200
    assert "Ada Lovelace &lt;ada@example.com&gt; joined segment &#x27;Enterprise MQLs&#x27;" in page.text
    assert "2 unread" in page.text
    client.post(reverse("activation:notifications-read"))
    assert not Notification.objects.unread().exists()

    client.force_login(stranger)
    assert "No notifications yet." in client.get(reverse("activation:notifications")).text


@pytest.mark.django_db
def test_global_and_automation_suppressions_skip_the_whole_run():
    own_suppression = SegmentFactory(kind="suppression", name="Competitors")
    global_suppression = SegmentFactory(kind="suppression", is_global=True, name="Legal hold")
    automation = automation_with({"kind": "adjust_score", "score_delta": 5})
    automation.suppression_segments.add(own_suppression)
    competitor, on_hold, fine = ContactFactory(), ContactFactory(), ContactFactory()
    join(own_suppression, competitor)
    join(global_suppression, on_hold)
    join(automation.trigger_segment, competitor, on_hold, fine)

    outcome = process_pending()

    assert (outcome.done, outcome.skipped) == (1, 2)
    assert (score(competitor), score(on_hold), score(fine)) == (0, 0, 5)
    reasons = dict(AutomationRun.objects.filter(status="skipped").values_list("contact_id", "skip_reason"))
    assert reasons == {
        competitor.pk: "in suppression segment 'Competitors'",
        on_hold.pk: "in suppression segment 'Legal hold'",
    }


@pytest.mark.django_db
def test_unreachable_contacts_are_scored_but_never_enrolled():
    sequence = NurtureSequenceFactory()
    automation = automation_with({"kind": "enrol", "sequence": sequence}, {"kind": "adjust_score", "score_delta": 1})
    blocked = ContactFactory(do_not_contact=True)
    bounced = ContactFactory(email_status="bounced")
    unsubscribed = ContactFactory(email_status="unsubscribed")
    fine = ContactFactory()
    join(automation.trigger_segment, blocked, bounced, unsubscribed, fine)

    process_pending()

    assert list(Enrolment.objects.values_list("contact", flat=True)) == [fine.pk]
    assert [score(c) for c in (blocked, bounced, unsubscribed, fine)] == [1, 1, 1, 1]


@pytest.mark.django_db
def test_failed_run_is_visible_and_retried_without_repeating_done_actions(settings, superuser, client):
    owner = UserFactory(username="owner")
    automation = automation_with({"kind": "adjust_score", "score_delta": 7}, {"kind": "notify_owner"})
    ada = ContactFactory(owner=owner)
    join(automation.trigger_segment, ada)
    # A mail server that is not there: nothing listens on port 9 here.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2

    outcome = process_pending()

    run = AutomationRun.objects.get()
    assert (outcome.failed, run.status, run.attempts) == (1, "failed", 1)
    assert run.last_error.startswith("action #1 (Notify the contact's owner): ConnectionRefusedError")
    assert run.next_attempt_at > timezone.now()
    assert score(ada) == 7
    assert not Notification.objects.exists()
    client.force_login(superuser)
    changelist = client.get(reverse("admin:activation_automationrun_changelist") + "?status__exact=failed")
    assert "ConnectionRefusedError" in changelist.text

    # Not due yet: nothing happens; once due (and the mail server is back) it completes.
    assert process_pending().claimed == 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    process_pending(now=timezone.now() + timedelta(minutes=5))

    run.refresh_from_db()
    assert (run.status, run.attempts, run.last_error) == ("done", 2, "")
    assert score(ada) == 7
    assert len(mail.outbox) == 1
    assert Notification.objects.get().recipient == owner


@pytest.mark.django_db
def test_run_gives_up_after_max_attempts_until_retried_by_hand(settings):
    automation = automation_with({"kind": "notify_owner"})
    join(automation.trigger_segment, ContactFactory(owner=UserFactory()))
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    later = timezone.now()
    for _ in range(6):
        later += timedelta(hours=1)
        process_pending(now=later)

    run = AutomationRun.objects.get()
    assert (run.status, run.attempts, run.next_attempt_at) == ("failed", 5, None)

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert AutomationRun.objects.retry() == 1
    process_pending()
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("done", 6)


@pytest.mark.django_db
def test_admin_retry_action_requeues_failed_runs(superuser, client):
    automation = automation_with({"kind": "adjust_score", "score_delta": 1})
    ada = ContactFactory()
    join(automation.trigger_segment, ada)
    process_pending()
    AutomationRun.objects.update(status="failed", last_error="boom", done_actions=[])
    client.force_login(superuser)

    response = client.post(
        reverse("admin:activation_automationrun_changelist"),
        {"action": "retry_runs", "_selected_action": list(AutomationRun.objects.values_list("pk", flat=True))},
        follow=True,
    )

    assert "1 failed run queued again." in response.text
    assert AutomationRun.objects.get().status == "pending"


@pytest.mark.django_db
def test_a_claimed_run_is_not_claimed_again_until_its_lease_runs_out():
    automation = automation_with({"kind": "adjust_score", "score_delta": 1})
    join(automation.trigger_segment, ContactFactory())
    process_pending(max_batches=0)

    [mine] = claim_runs(limit=10)

    assert claim_runs(limit=10) == []
    [theirs] = claim_runs(limit=10, now=timezone.now() + timedelta(hours=1))
    assert theirs.pk == mine.pk
    assert theirs.claim_token != mine.claim_token


@pytest.mark.django_db
def test_schedule_is_ensured_once():
    ensure_schedules()
    ensure_schedules()

    schedule = Schedule.objects.get(func="activation.automations.process_automations")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 1, -1)


@pytest.mark.django_db
def test_enqueued_task_runs_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    # django-q2's sync mode: the task goes through pickling, signing and the worker in-process.
    monkeypatch.setattr(Conf, "SYNC", True)
    automation = automation_with({"kind": "adjust_score", "score_delta": 2})
    ada = ContactFactory()

    with django_capture_on_commit_callbacks(execute=True):
        join(automation.trigger_segment, ada)
        enqueue_processing()
        assert score(ada) == 0

    assert score(ada) == 2


@pytest.mark.django_db(transaction=True)
def test_two_workers_apply_each_action_exactly_once():
    owner = UserFactory(username="owner")
    sequence = NurtureSequenceFactory()
    automation = automation_with(
        {"kind": "adjust_score", "score_delta": 1},
        {"kind": "enrol", "sequence": sequence},
        {"kind": "notify_owner"},
    )
    contacts = Contact.objects.bulk_create([Contact(email=f"c{i}@example.com", owner=owner) for i in range(300)])
    join(automation.trigger_segment, *contacts)
    start = threading.Barrier(2)
    outcomes, errors = [], []

    def worker():
        try:
            start.wait()
            outcomes.append(process_pending(batch_size=25))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(o.done for o in outcomes) == 300
    assert sum(o.discovered for o in outcomes) == 300
    assert set(Contact.objects.values_list("lead_score", flat=True)) == {1}
    assert Enrolment.objects.count() == 300
    assert Notification.objects.count() == 300
    assert AutomationRun.objects.filter(status="done").count() == 300
    assert sum(len(m.body.splitlines()) - 2 for m in mail.outbox) == 300
    assert Automation.objects.get().runs.filter(attempts=1).count() == 300


@pytest.fixture
def webhook(db, httpserver, settings):
    settings.ACTIVATION_WEBHOOK_BACKOFF_SECONDS = 0
    return DestinationFactory(
        kind="webhook", url=httpserver.url_for("/hook"), secret="s3cret", is_internal=True, batch_size=2
    )


@pytest.mark.django_db
def test_webhook_gets_signed_batches_of_reachable_contacts_only(httpserver, webhook):
    httpserver.expect_request("/hook", method="POST").respond_with_json({"ok": True})
    automation = automation_with({"kind": "webhook", "destination": webhook})
    ada, bob, cy = (ContactFactory(email=f"{n}@example.com", first_name=n.title()) for n in ("ada", "bob", "cy"))
    blocked = ContactFactory(do_not_contact=True)
    join(automation.trigger_segment, ada, bob, cy, blocked)

    process_pending()

    requests = [request for request, _ in httpserver.log]
    assert len(requests) == 2
    bodies = [json.loads(r.data) for r in requests]
    assert [m["email"] for b in bodies for m in b["added"]] == ["ada@example.com", "bob@example.com", "cy@example.com"]
    assert (bodies[0]["trigger"], bodies[0]["removed"]) == ("join", [])
    assert bodies[0]["segment"]["slug"] == automation.trigger_segment.slug
    for request in requests:
        expected = "sha256=" + hmac.new(b"s3cret", request.data, hashlib.sha256).hexdigest()
        assert request.headers["X-Crmseg-Signature"] == expected
    assert len({r.headers["Idempotency-Key"] for r in requests}) == 2
    assert AutomationRun.objects.filter(status="done").count() == 4


@pytest.mark.django_db
def test_webhook_refusal_fails_the_run_and_the_retry_repeats_the_same_keys(httpserver, webhook):
    httpserver.expect_oneshot_request("/hook").respond_with_data("bad payload", status=422)
    automation = automation_with(
        {"kind": "adjust_score", "score_delta": 4}, {"kind": "webhook", "destination": webhook}
    )
    ada = ContactFactory()
    join(automation.trigger_segment, ada)

    process_pending()

    run = AutomationRun.objects.get()
    assert run.status == "failed"
    assert "HTTP 422 'bad payload'" in run.last_error
    assert run.last_error.startswith("action #1 (call webhook ")

    httpserver.expect_request("/hook").respond_with_json({"ok": True})
    process_pending(now=timezone.now() + timedelta(minutes=5))

    run.refresh_from_db()
    assert run.status == "done"
    assert score(ada) == 4
    keys = [request.headers["Idempotency-Key"] for request, _ in httpserver.log]
    assert keys == [keys[0], keys[0]]


@pytest.mark.django_db
def test_webhook_action_needs_a_webhook_destination():
    csv = DestinationFactory(kind="csv")
    action = AutomationAction(automation=AutomationFactory(), kind="webhook", destination=csv)

    with pytest.raises(ValidationError, match="is not a webhook destination"):
        action.full_clean()
    with pytest.raises(ValidationError, match="Choose the webhook destination"):
        AutomationAction(automation=action.automation, kind="webhook").full_clean()


@pytest.mark.django_db
def test_announced_membership_changes_run_automations_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(Conf, "SYNC", True)
    automation = automation_with({"kind": "adjust_score", "score_delta": 3})
    other = SegmentFactory()
    ada = ContactFactory()

    with django_capture_on_commit_callbacks(execute=True):
        join(automation.trigger_segment, ada)
        memberships_changed([other.pk, automation.trigger_segment.pk])
        assert score(ada) == 0

    assert score(ada) == 3


@pytest.mark.django_db
def test_admin_pages_show_automations_with_run_counts(superuser, client):
    sequence = NurtureSequenceFactory(name="Welcome series")
    automation = automation_with({"kind": "enrol", "sequence": sequence}, name="Welcome new MQLs")
    join(automation.trigger_segment, ContactFactory(), ContactFactory())
    client.force_login(superuser)

    response = client.post(
        reverse("admin:activation_automation_changelist"),
        {"action": "process_now", "_selected_action": [automation.pk]},
        follow=True,
    )

    assert "2 new changes, 2 runs done, 0 suppressed, 0 failed." in response.text
    assert "Welcome new MQLs" in response.text
    for name, args in [
        ("admin:activation_automation_change", [automation.pk]),
        ("admin:activation_automation_add", []),
        ("admin:activation_automationrun_changelist", []),
        ("admin:activation_nurturesequence_changelist", []),
        ("admin:activation_enrolment_changelist", []),
        ("admin:activation_notification_changelist", []),
    ]:
        assert client.get(reverse(name, args=args)).status_code == 200, name


@pytest.mark.django_db
def test_processing_a_batch_takes_the_same_queries_for_3_or_30_contacts():
    owner = UserFactory(username="owner")
    automation = automation_with(
        {"kind": "adjust_score", "score_delta": 1},
        {"kind": "enrol", "sequence": NurtureSequenceFactory()},
        {"kind": "notify_owner"},
    )
    counts = []
    for size in (3, 30):
        join(automation.trigger_segment, *ContactFactory.create_batch(size, owner=owner))
        with CaptureQueriesContext(connection) as queries:
            assert process_pending().done == size
        counts.append(len(queries))

    assert counts[0] == counts[1]


@pytest.mark.django_db
def test_a_refresh_that_adds_members_runs_automations_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(Conf, "SYNC", True)
    segment = SegmentFactory(rule={"field": "lifecycle_stage", "op": "eq", "value": "mql"})
    automation = automation_with({"kind": "adjust_score", "score_delta": 10}, trigger_segment=segment)
    mql, lead = ContactFactory(lifecycle_stage="mql"), ContactFactory(lifecycle_stage="lead")

    with django_capture_on_commit_callbacks(execute=True):
        result = refresh_segment(segment.pk)

    assert (result.status, result.added) == ("ok", 1)
    assert (score(mql), score(lead)) == (10, 0)
    assert AutomationRun.objects.get().automation == automation


@pytest.mark.django_db
def test_static_members_added_by_hand_run_automations(monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(Conf, "SYNC", True)
    segment = SegmentFactory(kind="static", rule=None)
    automation_with({"kind": "adjust_score", "score_delta": 2}, trigger_segment=segment)
    ada = ContactFactory()

    with django_capture_on_commit_callbacks(execute=True):
        add_static_members(segment, [ada.pk])

    assert score(ada) == 2
