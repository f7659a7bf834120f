"""Experiments on campaign content: does segment-specific content beat the campaign's generic default?

An experiment belongs to a campaign and runs over its target segments (each a slice of the
results). Every eligible member of a target segment is assigned, by a keyed hash of the
experiment's salt and the contact id (activation/experiments.py), to one of three arms:

- specific: the variant of the contact's best-placed target segment (what personalization picks);
- generic: the campaign's default content, the same for everyone;
- holdout: no content of this campaign at all (optional, 0% by default).

The split and the arms cannot change after the first exposure (clone the experiment instead), so a
contact's arm never changes. Exposures are recorded once per contact and experiment, with the
arm and the slice the contact was served under.
"""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from activation.campaign_models import Campaign
from contacts.models import Contact
from segments.models import Segment


class Arm(models.TextChoices):
    SPECIFIC = "specific", "Segment-specific content"
    GENERIC = "generic", "Generic content"
    HOLDOUT = "holdout", "Hold-out (no content)"


class Metric(models.TextChoices):
    CLICK = "click", "Click-through (e-mail click on the campaign)"
    FORM_SUBMIT = "form_submit", "Form submission"
    DEMO_REQUEST = "demo_request", "Demo request"
    PURCHASE = "purchase", "Purchase"
    DEAL_WON = "deal_won", "Deal won"
    REVENUE = "revenue", "Revenue per contact (won deals + purchases)"


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


def new_salt() -> str:
    return secrets.token_hex(8)


def validate_metrics(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Secondary metrics are a list of metric names.")
    unknown = [item for item in value if item not in Metric.values]
    if unknown:
        raise ValidationError(f"Unknown metric {unknown[0]!r}; allowed: {', '.join(Metric.values)}.")


class ExperimentQuerySet(models.QuerySet["Experiment", "Experiment"]):
    def running(self) -> ExperimentQuerySet:
        return self.filter(status=ExperimentStatus.RUNNING, campaign__active=True)


# Fields that decide who gets what: frozen once anyone has been exposed.
DESIGN_FIELDS = ("campaign_id", "salt", "specific_percent", "generic_percent", "holdout_percent", "window_days")


class Experiment(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="experiments")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT)
    target_segments = models.ManyToManyField(
        Segment, related_name="experiments", help_text="Each needs a variant in the campaign; each is a results slice"
    )
    suppression_segments = models.ManyToManyField(
        Segment, related_name="suppressing_experiments", blank=True, help_text="Global suppressions always apply"
    )
    specific_percent = models.PositiveSmallIntegerField(
        "segment-specific %", default=50, validators=[MaxValueValidator(100)]
    )
    generic_percent = models.PositiveSmallIntegerField("generic %", default=50, validators=[MaxValueValidator(100)])
    holdout_percent = models.PositiveSmallIntegerField("hold-out %", default=0, validators=[MaxValueValidator(100)])
    metric = models.CharField("primary metric", max_length=20, choices=Metric.choices, default=Metric.CLICK)
    secondary_metrics = models.JSONField(default=list, blank=True, validators=[validate_metrics])
    window_days = models.PositiveSmallIntegerField(
        default=14,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
        help_text="Outcomes count from a contact's exposure until this many days after it",
    )
    baseline_rate = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0001), MaxValueValidator(0.9999)],
        help_text="Expected rate of the generic arm, for the sample size before results exist",
    )
    minimum_effect = models.FloatField(
        "minimum detectable effect",
        default=0.02,
        validators=[MinValueValidator(0.0001), MaxValueValidator(0.9999)],
        help_text="Smallest absolute lift worth detecting (0.02 = 2 percentage points), at 80% power",
    )
    salt = models.CharField(max_length=32, default=new_salt, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    stopped_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ExperimentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    specific_percent__gt=0,
                    generic_percent__gt=0,
                    specific_percent__lte=100,
                    generic_percent__lte=100,
                    holdout_percent__lte=100,
                ),
                name="experiment_arms_present",
            ),
            models.CheckConstraint(condition=models.Q(window_days__gte=1), name="experiment_window_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def split(self) -> dict[str, int]:
        return {
            Arm.SPECIFIC: self.specific_percent,
            Arm.GENERIC: self.generic_percent,
            Arm.HOLDOUT: self.holdout_percent,
        }

    @property
    def arms(self) -> list[str]:
        return [arm for arm, percent in self.split.items() if percent > 0]

    @property
    def metrics(self) -> list[str]:
        return [self.metric, *[m for m in self.secondary_metrics if m != self.metric]]

    def clean(self) -> None:
        errors: dict[str, str] = {}
        total = self.specific_percent + self.generic_percent + self.holdout_percent
        if total != 100:
            errors["holdout_percent"] = (
                f"The arms' split must add up to 100%: segment-specific {self.specific_percent} + generic "
                f"{self.generic_percent} + hold-out {self.holdout_percent} = {total}."
            )
        for field in ("specific_percent", "generic_percent"):
            if getattr(self, field) == 0:
                errors[field] = "Both content arms need some traffic: the test compares them."
        if self.window_days is not None and self.window_days < 1:
            errors["window_days"] = "The outcome window is at least 1 day."
        campaign = getattr(self, "campaign", None) if self.campaign_id else None
        if campaign is not None and not campaign.variants.exists():
            errors["campaign"] = f"{campaign.name!r} has no segment variants: add variants before testing them."
        if self.pk is not None and self.exposures.exists():
            stored = Experiment.objects.filter(pk=self.pk).values(*DESIGN_FIELDS).get()
            changed = [name for name in DESIGN_FIELDS if stored[name] != getattr(self, name)]
            for name in changed:
                errors[name.removesuffix("_id")] = (
                    "Contacts have been exposed: the campaign, arms, split and window cannot change now. "
                    "Clone the experiment to test another design."
                )
        if errors:
            raise ValidationError(errors)


class Exposure(models.Model):
    """A contact's first exposure to an experiment: the arm it was served and the slice it counted in."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="exposures")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    arm = models.CharField(max_length=10, choices=Arm.choices)
    segment = models.ForeignKey(
        Segment, on_delete=models.PROTECT, related_name="+", help_text="The target segment the contact was served under"
    )
    exposed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "contact"], name="exposure_once_per_contact"),
        ]
        indexes = [
            # Results group one experiment's exposures by arm and slice.
            models.Index(fields=["experiment", "arm", "segment"], name="exposure_experiment_arm_idx"),
        ]

    def __str__(self) -> str:
        return f"contact {self.contact_id} in {self.get_arm_display()} of experiment {self.experiment_id}"
