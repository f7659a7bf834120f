"""An erased contact's automation webhooks are told of the erasure, once, after it commits (issue 24).

An automation's webhook action posted the contact's id, email and names to a receiver; erasing the
contact queues a signed notice naming it by id to each such webhook, and to no other.
"""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from activation.automation_models import ErasureNotice
from activation.automations import process_automations, process_pending
from activation.erasure_notices import send_erasure_notices
from contacts.erasure import erase_contacts
from segments.models import Membership, MembershipChange
from tests.factories import AutomationFactory, ContactFactory, DestinationFactory
from tests.segments_support import run_queued
from tests.test_automations import automation_with

pytestmark = pytest.mark.django_db

TASK = "activation.erasure_notices.send_erasure_notices"


@pytest.fixture
def hooks(httpserver, settings):
    settings.ACTIVATION_WEBHOOK_MAX_ATTEMPTS = 1
    return {
        name: DestinationFactory(
            kind="webhook", url=httpserver.url_for(f"/{name}"), secret=f"{name}-secret", is_internal=True
        )
        for name in ("joined", "left", "unused")
    }


def _change(segment, contact, kind):
    if kind == "join":
        Membership.objects.get_or_create(segment=segment, contact=contact)
    MembershipChange.objects.create(segment=segment, contact=contact, kind=kind, reason="rule")


def _posted(httpserver, path):
    return [request for request, _ in httpserver.log if request.path == path]


def test_every_automation_webhook_that_was_sent_the_contact_gets_one_signed_erasure_notice(
    httpserver, hooks, api_client, django_capture_on_commit_callbacks
):
    # given: Grace and Alan were posted to the "joined" webhook, Grace to the "left" one too; the
    # "unused" webhook's automation never fired for Grace
    for name in hooks:
        httpserver.expect_request(f"/{name}", method="POST").respond_with_json({"ok": True})
    grace, alan = ContactFactory(email="grace@example.com"), ContactFactory(email="alan@example.com")
    on_join = automation_with({"kind": "webhook", "destination": hooks["joined"]})
    on_leave = automation_with({"kind": "webhook", "destination": hooks["left"]}, trigger="leave")
    automation_with(
        {"kind": "webhook", "destination": hooks["unused"]}, trigger_segment=on_join.trigger_segment, trigger="leave"
    )
    _change(on_join.trigger_segment, grace, "join")
    _change(on_join.trigger_segment, alan, "join")
    _change(on_leave.trigger_segment, grace, "leave")
    process_pending()
    assert json.loads(_posted(httpserver, "/joined")[0].data)["added"][0]["email"] == "grace@example.com"
    httpserver.clear_log()

    # when Grace is erased through the API
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client("contacts:erase").post(f"/api/v1/contacts/{grace.pk}/erase/")

    # then the answer and the admin log count two notices, sent once the erasure committed
    assert response.status_code == 200, response.content
    assert response.json()["webhook_notices"] == 2
    assert not httpserver.log  # nothing went out inside the erasure's transaction
    assert run_queued(TASK) == [{"sent": 2, "failed": 0}]
    for name in ("joined", "left"):
        (request,) = _posted(httpserver, f"/{name}")
        assert json.loads(request.data) == {
            "source": "erasure",
            "event": "contact.erased",
            "contacts": [{"id": grace.pk}],
        }
        signature = hmac.new(f"{name}-secret".encode(), request.data, hashlib.sha256).hexdigest()
        assert request.headers["X-Crmseg-Signature"] == f"sha256={signature}"
    assert not _posted(httpserver, "/unused")
    # and never again
    process_automations()
    assert send_erasure_notices(now=timezone.now() + timedelta(hours=1)) == {"sent": 0, "failed": 0}
    assert len(httpserver.log) == 2
    assert set(ErasureNotice.objects.values_list("contact_id", "status")) == {(grace.pk, "sent")}


def test_a_failed_notice_is_retried_with_back_off_under_the_same_idempotency_key(
    httpserver, hooks, ops_user, django_capture_on_commit_callbacks
):
    httpserver.expect_request("/joined", method="POST").respond_with_json({"ok": True})
    grace = ContactFactory()
    automation = automation_with({"kind": "webhook", "destination": hooks["joined"]})
    _change(automation.trigger_segment, grace, "join")
    process_pending()
    httpserver.clear_all_handlers()
    httpserver.clear_log()
    httpserver.expect_oneshot_request("/joined").respond_with_data("busy", status=503)

    with django_capture_on_commit_callbacks(execute=True):
        erasure = erase_contacts([grace.pk], by=ops_user)
    assert erasure.webhook_notices == 1
    assert LogEntry.objects.filter(change_message__contains="1 webhook notice(s) queued").exists()
    assert run_queued(TASK) == [{"sent": 0, "failed": 1}]
    notice = ErasureNotice.objects.get()
    assert (notice.status, notice.attempts) == ("failed", 1)
    assert "503" in notice.last_error
    assert send_erasure_notices() == {"sent": 0, "failed": 0}  # not due yet: 1 minute back-off

    httpserver.expect_request("/joined", method="POST").respond_with_json({"ok": True})
    assert send_erasure_notices(now=timezone.now() + timedelta(minutes=2)) == {"sent": 1, "failed": 0}

    first, second = (request.headers["Idempotency-Key"] for request, _ in httpserver.log)
    assert first == second
    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == ("sent", 2)


def test_automations_without_a_webhook_or_that_never_ran_for_the_contact_queue_no_notice(hooks):
    grace = ContactFactory()
    scoring = automation_with({"kind": "adjust_score", "score_delta": 5})
    automation_with(
        {"kind": "webhook", "destination": hooks["joined"]}, trigger_segment=AutomationFactory().trigger_segment
    )
    _change(scoring.trigger_segment, grace, "join")
    process_pending()

    assert erase_contacts([grace.pk]).webhook_notices == 0
    assert not ErasureNotice.objects.exists()
