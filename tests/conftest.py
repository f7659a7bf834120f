import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group


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


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "root-password-123")
