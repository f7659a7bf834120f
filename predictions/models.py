"""Propensity models: what to predict (target, horizon, algorithm), their trained versions, and
the scores the active version writes per contact.

A `PropensityModel` named `convert` puts `metrics.propensity_convert` (probability),
`metrics.propensity_convert_percentile` and `metrics.propensity_convert_tier` in the rule
registry (segments/rules/registry.py reads `PropensityModel.objects.rule_names()`).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from contacts.models import Contact

HORIZONS = (30, 60, 90, 180, 365)
MIN_CLASS_ROWS = 100
AUC_TOLERANCE = 0.02  # a new version replaces the active one unless its AUC is worse by more


class Target(models.TextChoices):
    CONVERT = "convert", "Convert (not a customer at the cutoff; becomes one or wins a deal)"
    EXPAND = "expand", "Expand (a customer; wins a new deal or buys above a threshold)"
    CHURN = "churn", "Churn (a customer; leaves the customer stage or goes quiet)"
    CUSTOM_RULE = "custom_rule", "Custom: a rule evaluated at the end of the horizon"
    CUSTOM_FIELD = "custom_field", "Custom: a known outcome field (no time axis)"


class Algorithm(models.TextChoices):
    LOGISTIC = "logistic", "Logistic regression (standardised, regularisation by cross-validation)"
    BOOSTING = "boosting", "Histogram gradient boosting"


class Holdout(models.TextChoices):
    TIME = "time", "By time: train at an earlier cutoff, validate on the next horizon"
    RANDOM = "random", "Random 25% of contacts"
    RULE = "rule", "The contacts a rule selects (a region, a source, or a segment's members by in_segment)"


class Tier(models.TextChoices):
    VERY_HIGH = "very_high", "Very high"
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"


class PropensityModelQuerySet(models.QuerySet["PropensityModel", "PropensityModel"]):
    def rule_names(self) -> list[str]:
        """Names of the models whose scores rules may read (every model: an unscored one matches nobody)."""
        return list(self.order_by("name").values_list("name", flat=True))


class PropensityModel(models.Model):
    name = models.CharField(
        max_length=40,
        unique=True,
        validators=[RegexValidator(r"^[a-z][a-z0-9_]*$", "Lower-case letters, digits and _ (e.g. convert)")],
        help_text="Rules read its scores as metrics.propensity_<name>",
    )
    target = models.CharField(max_length=20, choices=Target.choices)
    horizon_days = models.PositiveSmallIntegerField(default=90, help_text="30, 60, 90, 180 or 365")
    algorithm = models.CharField(max_length=10, choices=Algorithm.choices, default=Algorithm.LOGISTIC)
    holdout = models.CharField(max_length=10, choices=Holdout.choices, default=Holdout.TIME)
    label_rule = models.JSONField(null=True, blank=True, help_text="custom_rule: the outcome, as a segment rule")
    holdout_rule = models.JSONField(
        null=True,
        blank=True,
        help_text='rule holdout: who validates, as a segment rule (e.g. {"in_segment": "emea"}); the rest train',
    )
    label_field = models.CharField(
        max_length=120, blank=True, help_text="custom_field: props.<key> or a contact field holding the outcome"
    )
    expand_min_purchase = models.DecimalField(
        max_digits=14, decimal_places=2, default=0, help_text="expand: a purchase above this counts"
    )
    churn_on_inactivity = models.BooleanField(
        default=True, help_text="churn: no purchase and no engagement in the horizon also counts as churn"
    )
    volatile_fields = models.JSONField(
        default=list,
        blank=True,
        help_text="Fields without history to use anyway (lead_score, lifetime_value, customer_since, ...)",
    )
    retrain_days = models.PositiveSmallIntegerField(default=30, help_text="Retrain after this many days")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = PropensityModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def active_version(self) -> ModelVersion | None:
        return self.versions.filter(is_active=True).first()


class VersionState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    ACTIVE = "active", "Active"
    REVIEW = "review", "Kept for review (validation AUC worse than the active version's)"
    REFUSED = "refused", "Refused (too few outcomes)"
    FAILED = "failed", "Failed"
    RETIRED = "retired", "Retired"


class ModelVersion(models.Model):
    """One training of a model: its state while it runs, then what it learned and how it validated."""

    model = models.ForeignKey(PropensityModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=10, choices=VersionState.choices, default=VersionState.QUEUED)
    is_active = models.BooleanField(default=False)
    progress = models.CharField(max_length=200, blank=True)
    message = models.TextField(blank=True)
    target = models.CharField(max_length=20, choices=Target.choices)
    horizon_days = models.PositiveSmallIntegerField()
    algorithm = models.CharField(max_length=10, choices=Algorithm.choices)
    holdout = models.CharField(max_length=10, choices=Holdout.choices)
    holdout_rule = models.JSONField(null=True, blank=True, help_text="rule holdout: the rule it validated on")
    train_cutoff = models.DateTimeField(null=True, blank=True)
    validation_cutoff = models.DateTimeField(null=True, blank=True)
    features = models.JSONField(default=dict, blank=True, help_text="The encoder: columns and their vocabularies")
    counts = models.JSONField(default=dict, blank=True, help_text="Rows, positives and negatives per set")
    metrics = models.JSONField(default=dict, blank=True, help_text="Validation: AUC, interval, lift, calibration")
    leakage = models.JSONField(default=list, blank=True, help_text="Features flagged (and left out) as leaks")
    importance = models.JSONField(default=list, blank=True, help_text="Global factor importance")
    background = models.JSONField(
        default=list,
        blank=True,
        help_text="Boosting: encoded rows of training contacts that per-contact factors compare with",
    )
    artifact = models.BinaryField(null=True, blank=True, editable=False, help_text="The fitted model, skops format")
    artifact_signature = models.CharField(max_length=64, blank=True, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    scored_at = models.DateTimeField(null=True, blank=True)
    scored_contacts = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["model", "number"], name="modelversion_number_unique"),
            # One training of a model at a time: a second queued/running version is refused.
            models.UniqueConstraint(
                fields=["model"],
                condition=models.Q(state__in=["queued", "running"]),
                name="modelversion_one_training",
            ),
            models.UniqueConstraint(
                fields=["model"], condition=models.Q(is_active=True), name="modelversion_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.number}"


class PropensityScore(models.Model):
    """The active version's score of one contact: rules read it as metrics.propensity_<model>*."""

    # No index of its own: (model, contact) and (model, probability) both lead with it, and each index
    # is written for every score of the daily run.
    model = models.ForeignKey(PropensityModel, on_delete=models.CASCADE, related_name="scores", db_index=False)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="propensity_scores")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    probability = models.FloatField()
    percentile = models.FloatField(help_text="Share of scored contacts with this probability or lower, percent")
    tier = models.CharField(max_length=10, choices=Tier.choices)
    scored_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "contact"], name="propensityscore_unique")]
        indexes = [
            # Rules read a score by (model, contact); top_percent sorts one model's probabilities.
            models.Index(fields=["model", "probability"], name="propensityscore_prob_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id}/{self.contact_id}: {self.probability:.3f}"
