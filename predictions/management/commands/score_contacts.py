"""python manage.py score_contacts NAME [--contact ID ...] [--now ISO]"""

from django.core.management.base import BaseCommand, CommandError

from contacts.models import parse_iso_datetime
from predictions.models import PropensityModel
from predictions.scoring import NoUsableVersion, score_model


class Command(BaseCommand):
    help = "Score contacts with a model's active version and store metrics.propensity_<name> for rules."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--contact", type=int, action="append", dest="contact_ids", help="Only this contact id")
        parser.add_argument("--now", help="ISO datetime to score as of (default now)")

    def handle(self, *args, name, contact_ids, now, **options):
        model = PropensityModel.objects.filter(name=name).first()
        if model is None:
            known = ", ".join(PropensityModel.objects.rule_names()) or "none yet"
            raise CommandError(f"No model named {name!r} (known: {known}).")
        when = None
        if now:
            try:
                when = parse_iso_datetime(now)
            except ValueError:
                raise CommandError(f"--now {now!r} is not an ISO datetime (e.g. 2026-01-31T00:00:00+00:00)") from None
        try:
            summary = score_model(model, now=when, contact_ids=contact_ids)
        except NoUsableVersion as missing:
            raise CommandError(str(missing)) from None
        if summary.fallback_from:
            self.stderr.write(
                f"version {summary.fallback_from} was refused on load (changed since training); "
                f"version {summary.version} scored instead"
            )
        self.stdout.write(f"model:     {summary.model} v{summary.version}")
        self.stdout.write(f"contacts:  {summary.contacts}")
        self.stdout.write(f"measures:  {summary.measures}")
        self.stdout.write(f"duration:  {summary.duration_ms / 1000:.2f} s")
