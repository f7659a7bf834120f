import importlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test.utils import override_settings
from rest_framework.test import APIClient

from api.keys import create_api_key
from predictions.models import PropensityModel
from predictions.training import queue_version, train_version
from tests.predictions_support import NOW, plant_convert
from tests.segments_support import run_queued
from tests.shared_rows import made_once


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing():
    """MD5 for the tests' own passwords: the production hasher (PBKDF2, 1,000,000 rounds) took
    0.37 s per user made or logged in, over a minute of every run. Only this test session is
    overridden: the settings module, and every process the tests start, keep Django's default."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture
def ops_user(db):
    """A member of the Operations group with staff access to the admin."""
    user = get_user_model().objects.create_user("ops", "ops@example.com", "ops-password-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Operations"))
    return user


@pytest.fixture
def sales_user(db):
    """A member of the Sales group: reads contacts and companies, no admin."""
    user = get_user_model().objects.create_user("rep", "rep@example.com", "rep-password-123")
    user.groups.add(Group.objects.get(name="Sales"))
    return user


# The defaults data migrations load (module, function). A transactional test (browser tests are)
# starts from the tables as the previous one's flush left them: empty.
SEEDED_BY_MIGRATIONS = [
    ("contacts.migrations.0012_data_quality_originals_and_titles", "load_defaults"),  # job title rules
    ("contacts.migrations.0015_criteria_plan", "load_plan"),  # the criteria plan of the coverage report
]


@pytest.fixture
def seeded_by_migrations(db):
    """What the data migrations load, loaded again (each loader skips what is there)."""
    for module, loader in SEEDED_BY_MIGRATIONS:
        getattr(importlib.import_module(module), loader)(django_apps, None)


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "root-password-123")


@pytest.fixture
def api_client(db):
    """api_client(*scopes) -> a DRF test client sending a fresh API key with those scopes."""

    def make(*scopes: str) -> APIClient:
        _key, plain = create_api_key(name="test integration", scopes=list(scopes))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
        return client

    return make


@pytest.fixture
def with_details(django_capture_on_commit_callbacks) -> Callable[[], AbstractContextManager[None]]:
    """A block whose refreshes end as in a worker: the after-commit callbacks run (the test's
    transaction never commits), then the detail tasks they queued (segments/history.py)."""

    @contextmanager
    def described() -> Iterator[None]:
        with django_capture_on_commit_callbacks(execute=True):
            yield
        run_queued()

    return described


@pytest.fixture(scope="module")
def trained_once(django_db_setup, django_db_blocker) -> Iterator[int]:
    """1,000 planted contacts and a trained convert model (tests/predictions_support.py), made once
    for the module that asks (tests/shared_rows.py); `trained` reads the model in each test."""
    with made_once(django_db_blocker):
        plant_convert(1000)
        model = PropensityModel.objects.create(name="convert", target="convert", horizon_days=90)
        train_version(queue_version(model), now=NOW)
        yield model.pk


@pytest.fixture
def trained(trained_once, db):
    return PropensityModel.objects.get(pk=trained_once)
