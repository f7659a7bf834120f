"""API keys, scopes, roles and throttling."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from api.keys import create_api_key, hash_key
from api.models import ApiKey
from tests.factories import ContactFactory, UserFactory

CONTACTS = "/api/v1/contacts/"


def bearer(plain: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    return client


def test_key_is_stored_hashed_and_shown_once(db):
    api_key, plain = create_api_key(name="website", scopes=["contacts:read"])

    assert plain.startswith(f"crmseg_{api_key.prefix}_")
    assert api_key.secret_hash == hash_key(plain)
    assert plain not in str(ApiKey.objects.filter(pk=api_key.pk).values().get())


def test_create_api_key_command_prints_the_key_once(db):
    out, err = StringIO(), StringIO()

    call_command("create_api_key", "pipeline", "--scopes", "contacts:read,activities:write", stdout=out, stderr=err)

    plain = out.getvalue().strip()
    api_key = ApiKey.objects.get()
    assert api_key.name == "pipeline"
    assert api_key.scopes == ["activities:write", "contacts:read"]
    assert api_key.secret_hash == hash_key(plain)
    assert bearer(plain).get(CONTACTS).status_code == 200


def test_create_api_key_command_refuses_unknown_scope(db):
    with pytest.raises(CommandError, match="Unknown scope contacts:delete"):
        call_command("create_api_key", "x", "--scopes", "contacts:delete", stdout=StringIO(), stderr=StringIO())
    assert not ApiKey.objects.exists()


def test_create_api_key_command_sets_expiry(db):
    call_command(
        "create_api_key",
        "x",
        "--scopes",
        "contacts:read",
        "--expires",
        "2099-01-01",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    assert ApiKey.objects.get().expires_at.year == 2099


def test_missing_key_is_401_with_json_error(db):
    response = APIClient().get(CONTACTS)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert "Bearer" in response.json()["error"]["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer nonsense", "Malformed API key"),
        ("Bearer crmseg_deadbeef_wrongsecret", "Invalid API key"),
        ("Bearer ", "Empty bearer token"),
    ],
)
def test_bad_key_is_401(db, header, message):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(CONTACTS)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert message in response.json()["error"]["message"]


def test_right_prefix_wrong_secret_is_401(db):
    _api_key, plain = create_api_key(name="x", scopes=["contacts:read"])

    response = bearer(plain[:-2] + "xx").get(CONTACTS)

    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid API key."


def test_revoked_key_is_401(db):
    api_key, plain = create_api_key(name="x", scopes=["contacts:read"])
    api_key.revoke()

    response = bearer(plain).get(CONTACTS)

    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_expired_key_is_401(db):
    _key, plain = create_api_key(name="x", scopes=["contacts:read"], expires_at=timezone.now() - timedelta(seconds=1))

    response = bearer(plain).get(CONTACTS)

    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_key_without_scope_is_403_naming_the_scope(api_client):
    response = api_client("activities:write").get(CONTACTS)

    assert response.status_code == 403
    body = response.json()["error"]
    assert body["code"] == "missing_scope"
    assert "'contacts:read'" in body["message"]
    assert body["details"] == {"scopes": ["contacts:read"]}


def test_read_scope_does_not_allow_writes(api_client):
    response = api_client("contacts:read").post(CONTACTS, {"email": "a@example.com"}, format="json")

    assert response.status_code == 403
    assert "'contacts:write'" in response.json()["error"]["message"]


def test_last_used_is_written_at_most_once_a_minute(db, django_assert_num_queries):
    _api_key, plain = create_api_key(name="x", scopes=["contacts:read"])
    client = bearer(plain)
    client.get(CONTACTS)
    first_use = ApiKey.objects.get().last_used_at
    assert first_use is not None

    with django_assert_num_queries(2):  # the key lookup and the (empty) page; no UPDATE
        client.get(CONTACTS)

    assert ApiKey.objects.get().last_used_at == first_use
    ApiKey.objects.update(last_used_at=first_use - timedelta(minutes=2))
    client.get(CONTACTS)
    assert ApiKey.objects.get().last_used_at > first_use


def test_operations_staff_session_may_write(ops_user):
    client = APIClient()
    client.force_login(ops_user)

    response = client.post(CONTACTS, {"email": "new@example.com"}, format="json")

    assert response.status_code == 201


def test_sales_session_may_read_but_not_write(sales_user):
    ContactFactory()
    client = APIClient()
    client.force_login(sales_user)

    assert client.get(CONTACTS).status_code == 200
    response = client.post(CONTACTS, {"email": "new@example.com"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"].startswith("Your role lacks the 'contacts:write' scope")


def test_user_without_role_gets_403(db):
    client = APIClient()
    client.force_login(UserFactory())

    response = client.get(CONTACTS)

    assert response.status_code == 403


def test_session_writes_need_csrf_token(ops_user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(ops_user)

    response = client.post(CONTACTS, {"email": "new@example.com"}, format="json")

    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]


@override_settings(API_THROTTLE_RATE="3/min")
def test_throttled_key_gets_429_with_retry_after(api_client, settings):
    cache.clear()
    client = api_client("contacts:read")
    for _ in range(3):
        assert client.get(CONTACTS).status_code == 200

    response = client.get(CONTACTS)

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "throttled"
    assert api_client("contacts:read").get(CONTACTS).status_code == 200  # another key has its own budget
    cache.clear()


def test_admin_creates_key_and_shows_it_once(superuser, client):
    client.force_login(superuser)

    response = client.post(
        reverse("admin:api_apikey_add"),
        {
            "name": "website",
            "scopes": ["contacts:read", "personalization:read"],
            "expires_at_0": "",
            "expires_at_1": "",
        },
        follow=True,
    )

    api_key = ApiKey.objects.get()
    shown = [str(m) for m in response.context["messages"]]
    assert any(f"crmseg_{api_key.prefix}_" in m for m in shown)
    plain = next(m for m in shown if "crmseg_" in m).split(": ", 1)[1].split(" ")[0]
    assert api_key.secret_hash == hash_key(plain)
    assert api_key.scopes == ["contacts:read", "personalization:read"]
    changelist = client.get(reverse("admin:api_apikey_changelist"))
    assert f"crmseg_{api_key.prefix}_…" in changelist.content.decode()
    assert plain not in changelist.content.decode()


def test_admin_revokes_keys(superuser, client):
    api_key, plain = create_api_key(name="x", scopes=["contacts:read"])
    client.force_login(superuser)

    client.post(reverse("admin:api_apikey_changelist"), {"action": "revoke_keys", "_selected_action": [api_key.pk]})

    assert ApiKey.objects.get().revoked_at is not None
    assert bearer(plain).get(CONTACTS).status_code == 401
