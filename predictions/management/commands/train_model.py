"""python manage.py train_model NAME [--target convert --horizon 90 --algorithm logistic --holdout time] [--now ISO]"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from contacts.models import parse_iso_datetime
from predictions.models import Algorithm, Holdout, PropensityModel, Target
from predictions.report import report_lines
from predictions.targets import target_errors
from predictions.training import TrainingBusy, TrainingRefused, queue_version, train_version


class Command(BaseCommand):
    help = (
        "Train a propensity model now (defining it first with --target), print its validation, activate it if as good."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The model's name (rules read metrics.propensity_<name>)")
        parser.add_argument("--target", help=f"Define or change the target: {', '.join(Target.values)}")
        parser.add_argument("--horizon", type=int, help="Horizon in days: 30, 60, 90, 180 or 365")
        parser.add_argument("--algorithm", choices=Algorithm.values)
        parser.add_argument("--holdout", choices=Holdout.values)
        parser.add_argument("--now", help="ISO datetime to train as of (default now)")

    def handle(self, *args, name, target, horizon, algorithm, holdout, now, **options):
        when = None
        if now:
            try:
                when = parse_iso_datetime(now)
            except ValueError:
                raise CommandError(f"--now {now!r} is not an ISO datetime (e.g. 2026-01-31T00:00:00+00:00)") from None
        model = self.model(name, target=target, horizon=horizon, algorithm=algorithm, holdout=holdout)
        try:
            version = queue_version(model)
        except TrainingBusy as busy:
            raise CommandError(str(busy)) from None
        try:
            train_version(version, now=when, progress=lambda text: self.stdout.write(f"... {text}"))
        except TrainingRefused as refusal:
            raise CommandError(str(refusal)) from None
        version.refresh_from_db()
        for line in report_lines(version):
            self.stdout.write(line)

    def model(self, name, *, target, horizon, algorithm, holdout) -> PropensityModel:
        model = PropensityModel.objects.filter(name=name).first()
        if model is None:
            if not target:
                known = ", ".join(PropensityModel.objects.rule_names()) or "none yet"
                raise CommandError(f"No model named {name!r} (known: {known}); define one with --target.")
            model = PropensityModel(name=name)
        changes = {"target": target, "horizon_days": horizon, "algorithm": algorithm, "holdout": holdout}
        for field, value in changes.items():
            if value is not None:
                setattr(model, field, value)
        errors = target_errors(model)
        if errors:
            raise CommandError("; ".join(f"{field}: {message}" for field, message in errors.items()))
        try:
            model.full_clean()
        except ValidationError as invalid:
            raise CommandError("; ".join(f"{f}: {' '.join(m)}" for f, m in invalid.message_dict.items())) from None
        model.save()
        return model
