"""First-run set-up for `make run`: the demo's "likely to convert" model, trained by the worker.

On the demo's 2,000 contacts a time holdout finds too few conversions to train (88 positives in a
90-day training window, 72 in a 180-day one; 100 are needed), so the demo model validates on a
random 25% of contacts over 180 days (~120 positives; validation AUC ~0.9 with its interval on the
model page). Nothing happens once any model exists, or without contacts.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from contacts.models import Contact
from predictions.models import Holdout, PropensityModel, Target
from predictions.tasks import enqueue_training


class Command(BaseCommand):
    help = "Define the demo's 'convert' propensity model and queue its training (only when no model exists)."

    def handle(self, *args, **options) -> None:
        if PropensityModel.objects.exists() or not Contact.objects.exists():
            return
        with transaction.atomic():
            model = PropensityModel.objects.create(
                name="convert", target=Target.CONVERT, horizon_days=180, holdout=Holdout.RANDOM
            )
            enqueue_training(model)
        self.stdout.write("Propensity model 'convert' (180 days, random holdout) defined; the worker trains it.")
