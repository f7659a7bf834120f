from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command

from contacts.models import Contact, EmailStatus, HygieneRun, Reachability


def test_bootstrap_demo_seeds_once_and_creates_the_admin(db, monkeypatch):
    monkeypatch.setenv("ADMIN_PASSWORD", "demo-password-123")
    first, second = StringIO(), StringIO()

    call_command("bootstrap_demo", contacts=40, stdout=first)
    call_command("bootstrap_demo", contacts=40, stdout=second)

    assert Contact.objects.count() == 40
    assert HygieneRun.objects.count() == 1  # reachability computed, not left to the nightly job
    not_valid = Contact.objects.exclude(email_status=EmailStatus.VALID)
    assert not not_valid.filter(reachability=Reachability.REACHABLE).exists()
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password("demo-password-123")
    assert "Created admin user 'admin'" in first.getvalue()
    assert "exists" in second.getvalue()
