"""Wrong passwords are throttled per account and per address, on the admin and the contact-page login
(issue 24, defect 10)."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db

LOGINS = ["/login/", "/admin/login/"]


@pytest.fixture(autouse=True)
def limits(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def _login(client, url: str, username: str, password: str, address: str = "203.0.113.5"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def _signed_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("url", LOGINS)
def test_an_account_is_locked_after_the_failure_limit_even_with_the_right_password(client, ops_user, url):
    for _ in range(2):
        wrong = _login(client, url, "ops", "wrong-password")
        assert wrong.status_code == 200  # the form again, with Django's error
    assert _login(client, url, "ops", "wrong-password").status_code == 429  # the third locks

    locked = _login(client, url, "ops", "ops-password-123")

    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Too many failed sign-ins" in page
    assert "locked for 15 minutes after the last failed attempt" in page
    assert not _signed_in(client)


def test_the_lock_holds_on_both_login_pages(client, ops_user):
    for _ in range(3):
        _login(client, "/login/", "ops", "wrong-password")

    assert _login(client, "/admin/login/", "ops", "ops-password-123").status_code == 429


def test_an_account_is_locked_whatever_address_the_guesses_come_from(client, ops_user):
    for number in range(3):
        _login(client, "/login/", "ops", "wrong-password", address=f"198.51.100.{number + 1}")

    locked = _login(client, "/login/", "ops", "ops-password-123", address="192.0.2.77")

    assert locked.status_code == 429
    assert not _signed_in(client)


def test_an_address_is_locked_whatever_accounts_it_guesses(client, ops_user, sales_user):
    for name in ("alice", "bob", "carol"):
        _login(client, "/login/", name, "guess")

    from_there = _login(client, "/login/", "rep", "rep-password-123")
    elsewhere = _login(client, "/login/", "rep", "rep-password-123", address="192.0.2.77")

    assert from_there.status_code == 429
    assert elsewhere.status_code == 302
    assert _signed_in(client)


def test_below_the_limit_the_right_password_still_works(client, ops_user):
    for _ in range(2):
        _login(client, "/admin/login/", "ops", "wrong-password")

    response = _login(client, "/admin/login/", "ops", "ops-password-123")

    assert response.status_code == 302
    assert _signed_in(client)


def test_the_lock_lifts_after_the_cool_off(client, ops_user, settings):
    for _ in range(3):
        _login(client, "/login/", "ops", "wrong-password")
    assert _login(client, "/login/", "ops", "ops-password-123").status_code == 429

    # sixteen minutes later
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16))

    response = _login(client, "/login/", "ops", "ops-password-123")
    assert response.status_code == 302
    assert get_user_model().objects.get(username="ops").last_login is not None


def test_behind_a_proxy_the_address_is_the_one_the_proxy_saw(client, ops_user, settings):
    settings.LOGIN_PROXY_COUNT = 1
    for name in ("alice", "bob", "carol"):
        # a client cannot escape by sending its own X-Forwarded-For: the proxy's entry is the last one
        forged = f"10.9.9.{len(name)}, 198.51.100.9"
        client.post("/login/", {"username": name, "password": "x"}, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forged)

    same_client = client.post(
        "/login/",
        {"username": "ops", "password": "ops-password-123"},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="198.51.100.9",
    )
    other_client = client.post(
        "/login/",
        {"username": "ops", "password": "ops-password-123"},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="198.51.100.10",
    )

    assert same_client.status_code == 429
    assert other_client.status_code == 302
