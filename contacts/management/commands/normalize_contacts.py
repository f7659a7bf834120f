"""normalize_contacts: apply the normalisation rules to every stored contact and print what changed."""

from django.core.management.base import BaseCommand

from contacts.renormalize import normalize_stored_contacts


class Command(BaseCommand):
    help = (
        "Normalise stored contacts (e-mail, phone to E.164, country to ISO code, names, job function and "
        "seniority from the title), keeping the originals; prints a report of what changed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; write nothing")
        parser.add_argument("--batch-size", type=int, default=2000)

    def handle(self, *args, dry_run: bool, batch_size: int, **options) -> None:
        if batch_size < 1:
            self.stderr.write("--batch-size must be at least 1")
            raise SystemExit(2)
        report = normalize_stored_contacts(batch_size=batch_size, dry_run=dry_run)
        if dry_run:
            self.stdout.write("Dry run: nothing written.")
        self.stdout.write("\n".join(report.lines()))
