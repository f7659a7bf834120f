"""First-run set-up for `make run`: demo data when the database is empty, and an admin user."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from contacts.models import Contact


class Command(BaseCommand):
    help = "Seed demo data if there are no contacts yet and make sure an 'admin' superuser exists."

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=int(os.environ.get("DEMO_CONTACTS", "2000")))

    def handle(self, *args, contacts: int, **options):
        if not Contact.objects.exists():
            call_command("seed_demo", contacts=contacts, stdout=self.stdout, stderr=self.stderr)
            # Engagement, interest and value segments read metrics; compute them for the demo now.
            call_command("compute_metrics", stdout=self.stdout, stderr=self.stderr)
            # Reachability (bounced, unsubscribed, role, disposable, inactive) is otherwise first
            # computed by the nightly hygiene job: the global "unreachable" suppression would be empty.
            call_command("check_hygiene", stdout=self.stdout, stderr=self.stderr)
        User = get_user_model()
        username = os.environ.get("ADMIN_USERNAME", "admin")
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin user {username!r} exists; log in with the password you were given.")
            return
        password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=f"{username}@localhost", password=password)
        if os.environ.get("ADMIN_PASSWORD"):
            self.stdout.write(f"Created admin user {username!r} with the password from ADMIN_PASSWORD.")
        else:
            self.stdout.write(
                self.style.WARNING(f"Created admin user {username!r} with password {password}  (shown once; keep it)")
            )
