"""`manage.py seed_demo --contacts N`: fill an empty database with a believable demo CRM."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from contacts import writes
from contacts.models import Contact


class Command(BaseCommand):
    help = "Build a demo CRM: ~N/8 companies, N contacts with stage history, 18 months of activity, deals."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contacts", type=int, default=2000, help="How many contacts to create (default 2000)")
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for the same data every time")
        parser.add_argument(
            "--force", action="store_true", help="Add demo data even though the database already has contacts"
        )

    def handle(self, *args, contacts: int, seed: int | None, force: bool, **options) -> None:
        if contacts < 1:
            raise CommandError(f"--contacts must be at least 1, not {contacts}.")
        existing = Contact.objects.count()
        if existing and not force:
            raise CommandError(
                f"The database already has {existing} contacts; seed_demo only fills an empty one. "
                "Pass --force to add demo data beside them (nothing is deleted)."
            )
        self.stdout.write(f"Seeding {contacts} demo contacts...")
        seeded = writes.seed_demo(contacts=contacts, seed=seed)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {seeded.companies} companies, {seeded.contacts} contacts, {seeded.activities} activities, "
                f"{seeded.deals} deals and {seeded.lifecycle_changes} lifecycle changes."
            )
        )
