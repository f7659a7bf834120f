import hashlib
import hmac
import json
import socket
import ssl
import threading
import time

import pytest
from django.core.exceptions import ValidationError
from werkzeug import Response

from activation import webhooks
from activation.exports import execute_run, start_run
from activation.models import ExportRun
from segments.models import Membership
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory

pytestmark = pytest.mark.django_db

SECRET = "s3cret-for-tests"


@pytest.fixture(autouse=True)
def fast_retries(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.ACTIVATION_WEBHOOK_MAX_ATTEMPTS = 3
    settings.ACTIVATION_WEBHOOK_BACKOFF_SECONDS = 0.5
    settings.ACTIVATION_WEBHOOK_TIMEOUT_SECONDS = 1


@pytest.fixture
def hook(httpserver):
    return DestinationFactory(
        kind="webhook", url=httpserver.url_for("/hook"), secret=SECRET, is_internal=True, batch_size=2
    )


def _activation(destination, contacts, **kwargs):
    activation = ActivationFactory(destination=destination, **kwargs)
    Membership.objects.bulk_create(Membership(segment=activation.segment, contact=c) for c in contacts)
    return activation


def _bodies(httpserver) -> list[dict]:
    return [json.loads(request.get_data()) for request, _ in httpserver.log]


def test_batches_are_signed_with_the_destination_secret(httpserver, hook):
    # given
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    contacts = ContactFactory.create_batch(3, phone="(415) 555-0123")
    activation = _activation(hook, contacts)

    # when
    run = execute_run(start_run(activation).pk)

    # then two batches of at most two members arrive, each signed over its exact body
    assert run.status == "succeeded", run.error
    assert run.exported_count == 3
    requests = [request for request, _ in httpserver.log]
    assert len(requests) == 2
    for request in requests:
        body = request.get_data()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert request.headers["X-Crmseg-Signature"] == expected
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Idempotency-Key"].startswith(f"crmseg-run-{run.pk}-add-")
    first, second = _bodies(httpserver)
    assert (first["action"], first["batch"], first["run"], first["segment"]) == (
        "add",
        1,
        run.pk,
        activation.segment.slug,
    )
    assert [m["id"] for m in first["members"] + second["members"]] == [c.pk for c in contacts]
    assert first["members"][0] == {
        "id": contacts[0].pk,
        "email": contacts[0].email,
        "first_name": "Ada",
        "last_name": contacts[0].last_name,
        "phone": "+14155550123",
        "job_title": "",
        "company": "",
        "country": "US",
    }
    assert len({r.headers["Idempotency-Key"] for r in requests}) == 2


def test_delta_webhook_sends_removed_members_by_id(httpserver, hook):
    httpserver.expect_request("/hook").respond_with_data("ok")
    a, b = ContactFactory.create_batch(2)
    activation = _activation(hook, [a, b], mode="delta")
    execute_run(start_run(activation).pk)
    httpserver.clear_log()
    Membership.objects.filter(contact=b).delete()

    run = execute_run(start_run(activation).pk)

    assert (run.status, run.added_count, run.removed_count) == ("succeeded", 0, 1)
    assert [(body["action"], body["members"]) for body in _bodies(httpserver)] == [("remove", [{"id": b.pk}])]


def test_5xx_and_timeouts_are_retried_with_backoff_and_the_same_idempotency_key(httpserver, hook):
    # given: first answer 503, then too slow, then fine
    answers = iter(["503", "slow", "ok"])

    def handler(request):
        answer = next(answers)
        if answer == "slow":
            time.sleep(1.5)
        return Response(answer, status=503 if answer == "503" else 200)

    httpserver.expect_request("/hook").respond_with_handler(handler)
    contact = ContactFactory()
    slept = []

    # when
    delivery = webhooks.post_json(hook, {"members": [contact.pk]}, idempotency_key="key-1", sleep=slept.append)

    # then
    assert (delivery.status, delivery.attempts) == (200, 3)
    assert slept == [0.5, 1.0]
    assert [request.headers["Idempotency-Key"] for request, _ in httpserver.log] == ["key-1"] * 3


def test_a_4xx_fails_at_once_with_the_answer_in_the_run_error(httpserver, hook):
    httpserver.expect_request("/hook").respond_with_data("bad payload", status=422)
    activation = _activation(hook, [ContactFactory()])

    run = execute_run(start_run(activation).pk)

    assert run.status == "failed"
    assert run.error == f"{hook.url} refused the batch: HTTP 422 'bad payload' (attempt 1)."
    assert len(httpserver.log) == 1


def test_a_webhook_that_keeps_failing_fails_the_run_after_the_configured_attempts(httpserver, hook, settings):
    httpserver.expect_request("/hook").respond_with_data("down", status=502)
    settings.ACTIVATION_WEBHOOK_BACKOFF_SECONDS = 0
    activation = _activation(hook, [ContactFactory()], mode="delta")

    run = execute_run(start_run(activation).pk)

    assert run.status == "failed"
    assert run.error == f"{hook.url} failed after 3 attempts; last: HTTP 502 'down'."
    assert len(httpserver.log) == 3
    # nothing was recorded as delivered: the next delta run sends the member again
    assert execute_run(start_run(activation).pk).added_count == 1


def test_a_rerun_of_a_failed_webhook_run_repeats_its_idempotency_keys(httpserver, hook):
    httpserver.expect_oneshot_request("/hook").respond_with_data("no", status=400)
    httpserver.expect_request("/hook").respond_with_data("ok")
    activation = _activation(hook, [ContactFactory()])
    run = execute_run(start_run(activation).pk)
    assert run.status == "failed"

    execute_run(run.pk)

    first, second = (request.headers["Idempotency-Key"] for request, _ in httpserver.log)
    assert first == second
    assert ExportRun.objects.get().status == "succeeded"


def test_redirects_are_not_followed(httpserver, hook):
    httpserver.expect_request("/hook").respond_with_data("", status=302, headers={"Location": "http://10.0.0.1/"})

    with pytest.raises(webhooks.WebhookError, match="refused the batch: HTTP 302"):
        webhooks.post_json(hook, {}, idempotency_key="k", sleep=lambda s: None)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://0.0.0.0/hook",
    ],
)
def test_private_loopback_and_link_local_hosts_are_refused(url):
    destination = DestinationFactory.build(kind="webhook", url=url, secret=SECRET, csv_columns=[])

    with pytest.raises(ValidationError) as exc:
        destination.full_clean()

    assert "otherwise non-public address; mark the destination internal" in exc.value.message_dict["url"][0]


def test_a_webhook_url_must_be_https():
    destination = DestinationFactory.build(kind="webhook", url="http://hooks.example.com/x", secret=SECRET)

    with pytest.raises(ValidationError) as exc:
        destination.full_clean()

    assert exc.value.message_dict["url"] == [
        "Webhook URL 'http://hooks.example.com/x' must use https (plain http only for internal destinations)."
    ]


def test_an_internal_destination_may_use_a_private_host():
    destination = DestinationFactory.build(kind="webhook", url="http://10.1.2.3/hook", secret=SECRET, is_internal=True)

    destination.full_clean()


def test_the_signature_is_a_plain_hmac_of_the_body():
    body = b'{"a":1}'

    assert webhooks.sign(body, "k") == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_a_public_webhook_connects_to_the_address_that_was_checked():
    # given a listener on this machine standing in for the checked address of a host name that
    # does not resolve at all (so only the pinned address can have been used)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    port = listener.getsockname()[1]
    accepted = []

    def accept_one():
        client, _ = listener.accept()
        accepted.append(client)
        client.close()

    thread = threading.Thread(target=accept_one)
    thread.start()
    connection = webhooks.PinnedHTTPSConnection("hooks.invalid", port, timeout=5, pinned_address="127.0.0.1")

    # when it connects (the TLS handshake then fails: the listener speaks no TLS)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        connection.connect()
    thread.join(timeout=5)
    listener.close()

    # then the TCP connection went to the pinned address
    assert len(accepted) == 1
