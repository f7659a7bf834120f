"""Webhooks must not reach our own network unless someone allowed to say so marks the destination internal.

Issue 24, defect 2: any key with activations:write could set is_internal and have the worker POST
member data to loopback or the internal network; and a few non-public ranges were accepted.
"""

import socket

import pytest
from django.core.exceptions import ValidationError

from activation import webhooks
from activation.exports import execute_run, start_run
from activation.models import Destination
from segments.models import Membership
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory

pytestmark = pytest.mark.django_db

SECRET = "s3cret-for-tests"

NON_PUBLIC = [
    "127.0.0.1",  # loopback
    "127.255.0.7",
    "10.1.2.3",  # private
    "172.16.5.4",
    "192.168.0.10",
    "169.254.169.254",  # link-local: cloud metadata
    "100.64.0.1",  # carrier-grade NAT (shared address space)
    "100.100.100.200",  # a cloud metadata address inside 100.64.0.0/10
    "100.127.255.254",
    "0.0.0.0",  # unspecified
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.2.10",  # documentation
    "198.18.0.1",  # benchmarking
    "::1",  # IPv6 loopback
    "::",  # unspecified
    "fe80::1",  # link-local
    "fc00::1",  # unique local
    "fd12:3456::1",
    "fec0::1",  # site-local (deprecated, still routed by some stacks)
    "ff02::1",  # multicast
    "2002:7f00:1::1",  # 6to4 wrapping 127.0.0.1
    "2002:a01:203::1",  # 6to4 wrapping 10.1.2.3
    "2002:5db8:d822::1",  # 6to4 wrapping a public address: the whole range is refused
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.1.2.3",
    "::ffff:100.100.100.200",
    "64:ff9b::a01:203",  # NAT64 of 10.1.2.3
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2001:db8::1",  # documentation
    "100::1",  # discard-only
]

PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:82b::200e"]


def _url(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}/hook"


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses_are_refused(address):
    with pytest.raises(ValidationError) as exc:
        webhooks.check_url(_url(address), internal=False)

    assert "mark the destination internal" in exc.value.messages[0]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_a_destination_on_a_non_public_address_does_not_validate(address):
    destination = DestinationFactory.build(kind="webhook", url=_url(address), secret=SECRET)

    with pytest.raises(ValidationError) as exc:
        destination.full_clean()

    assert list(exc.value.message_dict) == ["url"]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed_and_pinned(address):
    assert webhooks.check_url(_url(address), internal=False) == address


def test_a_host_name_is_judged_by_every_address_it_resolves_to(monkeypatch):
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 443)) for ip in ("93.184.216.34", "100.100.100.200")]
    monkeypatch.setattr(webhooks.socket, "getaddrinfo", lambda *args, **kwargs: answers)

    with pytest.raises(ValidationError, match=r"100\.100\.100\.200"):
        webhooks.check_url("https://hooks.example.test/in", internal=False)


def test_the_address_is_checked_again_at_delivery(monkeypatch, httpserver, settings, tmp_path):
    # given a destination whose host name resolved to a public address when it was saved ...
    settings.MEDIA_ROOT = tmp_path
    port = httpserver.port
    public = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]
    rebound = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    monkeypatch.setattr(webhooks.socket, "getaddrinfo", lambda *args, **kwargs: public)
    destination = DestinationFactory(kind="webhook", url=f"https://hooks.example.test:{port}/in", secret=SECRET)
    destination.full_clean()
    activation = ActivationFactory(destination=destination)
    Membership.objects.create(segment=activation.segment, contact=ContactFactory())

    # ... and to this machine when the worker delivers (DNS rebinding)
    monkeypatch.setattr(webhooks.socket, "getaddrinfo", lambda *args, **kwargs: rebound)
    run = execute_run(start_run(activation).pk)

    # then nothing is sent and the run says why
    assert run.status == "failed"
    assert "127.0.0.1" in run.error
    assert httpserver.log == []


# --- who may mark a destination internal -------------------------------------------------------

INTERNAL_HOOK = {"name": "CRM hook", "kind": "webhook", "url": "http://10.0.0.5/in", "is_internal": True, "secret": "s"}


def test_activations_write_alone_cannot_mark_a_destination_internal(api_client):
    manager = api_client("activations:write")

    response = manager.post("/api/v1/destinations/", INTERNAL_HOOK, format="json")

    assert response.status_code == 403, response.json()
    assert "activations:internal" in response.json()["error"]["message"]
    assert not Destination.objects.exists()


def test_activations_write_alone_cannot_switch_an_existing_destination_to_internal(api_client):
    manager = api_client("activations:write")
    destination = DestinationFactory(kind="webhook", url="https://93.184.216.34/in", secret="s")

    response = manager.patch(
        f"/api/v1/destinations/{destination.pk}/", {"url": "http://10.0.0.5/in", "is_internal": True}, format="json"
    )

    assert response.status_code == 403, response.json()
    destination.refresh_from_db()
    assert (destination.is_internal, destination.url) == (False, "https://93.184.216.34/in")


def test_activations_write_alone_cannot_point_an_internal_destination_elsewhere(api_client):
    manager = api_client("activations:write")
    destination = DestinationFactory(kind="webhook", url="http://10.0.0.5/in", secret="s", is_internal=True)

    moved = manager.patch(
        f"/api/v1/destinations/{destination.pk}/", {"url": "http://169.254.169.254/latest"}, format="json"
    )
    renamed = manager.patch(f"/api/v1/destinations/{destination.pk}/", {"name": "Renamed"}, format="json")
    public = {"url": "https://93.184.216.34/in", "is_internal": False}
    made_public = manager.patch(f"/api/v1/destinations/{destination.pk}/", public, format="json")

    assert moved.status_code == 403, moved.json()
    assert renamed.status_code == 200, renamed.json()
    assert made_public.status_code == 200, made_public.json()
    destination.refresh_from_db()
    assert (destination.is_internal, destination.url) == (False, "https://93.184.216.34/in")


def test_the_internal_scope_allows_it_and_the_change_is_recorded(api_client):
    client = api_client("activations:write", "activations:internal")

    response = client.post("/api/v1/destinations/", INTERNAL_HOOK, format="json")

    assert response.status_code == 201, response.json()
    destination = Destination.objects.get()
    assert destination.is_internal
    assert destination.internal_set_by.startswith("API key 'test integration' (crmseg_")
    assert destination.internal_set_at is not None
    body = response.json()
    assert body["internal_set_by"] == destination.internal_set_by
    assert body["internal_set_at"] is not None


def test_operations_staff_cannot_mark_a_destination_internal_but_a_superuser_can(client, ops_user, superuser):
    client.force_login(ops_user)
    refused = client.post("/api/v1/destinations/", INTERNAL_HOOK, content_type="application/json")
    client.force_login(superuser)
    allowed = client.post("/api/v1/destinations/", INTERNAL_HOOK, content_type="application/json")

    assert refused.status_code == 403, refused.json()
    assert allowed.status_code == 201, allowed.json()
    assert Destination.objects.get().internal_set_by == f"user 'root' (id {superuser.pk})"


def _admin_form(**overrides) -> dict:
    data = {
        "name": "Hook",
        "kind": "webhook",
        "min_audience_size": "",
        "csv_columns": "[]",
        "url": "http://10.0.0.5/in",
        "secret": "s",
        "batch_size": "1000",
        "is_internal": "on",
    }
    return {**data, **overrides}


def test_in_the_admin_only_a_superuser_sees_the_internal_switch(client, ops_user, superuser):
    client.force_login(ops_user)
    ops_page = client.get("/admin/activation/destination/add/").content.decode()
    client.force_login(superuser)
    root_page = client.get("/admin/activation/destination/add/").content.decode()

    assert 'name="is_internal"' not in ops_page
    assert 'name="is_internal"' in root_page


def test_the_admin_ignores_operations_staff_marking_a_destination_internal(client, ops_user):
    client.force_login(ops_user)

    response = client.post("/admin/activation/destination/add/", _admin_form(url="https://10.0.0.5/in"))

    # the private URL is then refused, since the destination is not internal
    assert response.status_code == 200
    assert "mark the destination internal" in response.content.decode()
    assert not Destination.objects.exists()


def test_a_superuser_marks_a_destination_internal_in_the_admin_and_it_is_recorded(client, superuser):
    client.force_login(superuser)

    response = client.post("/admin/activation/destination/add/", _admin_form())

    assert response.status_code == 302, response.content.decode()[:2000]
    destination = Destination.objects.get()
    assert destination.is_internal
    assert destination.internal_set_by == f"user 'root' (id {superuser.pk})"
    assert destination.internal_set_at is not None
