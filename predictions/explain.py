"""Why a contact scores as it does: the factors pushing its score up and down.

For the logistic model, a column's contribution is coefficient x (value - training mean) /
training standard deviation, in log-odds: the intercept plus every contribution is exactly the
model's decision value, and the calibrated probability is a monotone function of it. The factors
shown are the largest contributions each way, described in words with the contact's value
("pricing page views in last 30 days: 5"). They are computed from the contact's features as of
the time its stored score was computed, so they explain that score.

Gradient boosting has no such decomposition: its explanation lists the model's global factors
(permutation importance) and says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
from django.utils import timezone

from predictions.encoding import describe, encode
from predictions.features import read_features
from predictions.models import Algorithm, PropensityModel, PropensityScore, Tier
from predictions.scoring import NoUsableVersion, usable_version
from predictions.targets import in_population
from predictions.training import logistic_parts

TOP_FACTORS = 5


@dataclass(frozen=True)
class Factor:
    label: str
    value: str
    contribution: float

    @property
    def direction(self) -> str:
        return "+" if self.contribution > 0 else "-"

    def __str__(self) -> str:
        return f"{self.label}: {self.value} ({self.direction})"


@dataclass
class ContactScore:
    model: str
    version: int
    probability: float | None
    percentile: float | None
    tier: str | None
    scored_at: datetime | None
    up: list[Factor] = field(default_factory=list)
    down: list[Factor] = field(default_factory=list)
    decision: float | None = None
    intercept: float | None = None
    note: str = ""

    @property
    def tier_label(self) -> str:
        return Tier(self.tier).label if self.tier else ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tier_label"] = self.tier_label
        data["up"] = [{**asdict(f), "direction": f.direction, "text": str(f)} for f in self.up]
        data["down"] = [{**asdict(f), "direction": f.direction, "text": str(f)} for f in self.down]
        return data


def contributions(fitted, row: np.ndarray) -> tuple[np.ndarray, float]:
    """(per-column contributions in log-odds, intercept) of one encoded row under a logistic model."""
    mean, scale, coefficients, intercept = logistic_parts(fitted)
    return coefficients * (row.astype(np.float64) - mean) / scale, intercept


def contact_scores(contact_id: int) -> list[ContactScore]:
    """Every stored score of the contact with its factors (a few queries per model it has a score of)."""
    stored = PropensityScore.objects.filter(contact_id=contact_id).select_related("model").order_by("model__name")
    explained = []
    for score in stored:
        try:
            explained.append(explain_contact(score.model, contact_id, stored=score))
        except NoUsableVersion:
            continue
    return explained


def explain_contact(
    model: PropensityModel, contact_id: int, *, top: int = TOP_FACTORS, stored: PropensityScore | None = None
) -> ContactScore:
    """The contact's stored score of `model` and the factors behind it."""
    version, fitted, _refused = usable_version(model)
    if stored is None:
        stored = PropensityScore.objects.filter(model=model, contact_id=contact_id).first()
    result = ContactScore(
        model=model.name,
        version=version.number,
        probability=stored.probability if stored else None,
        percentile=stored.percentile if stored else None,
        tier=stored.tier if stored else None,
        scored_at=stored.scored_at if stored else None,
    )
    as_of = stored.scored_at if stored else timezone.now()
    raw = read_features(as_of=as_of, volatile=version.features.get("volatile", []), contact_ids=[contact_id])
    if not len(raw) or not in_population(model, raw)[0]:
        result.note = f"Not scored: the contact is outside the {model.name} model's population."
        return result
    columns = version.features["columns"]
    row = encode(raw, columns)
    if version.algorithm != Algorithm.LOGISTIC:
        result.note = "Gradient boosting: per-contact factors are not available; the model's main factors are shown."
        result.up = [Factor(item["label"], "", item["weight"]) for item in version.importance[:top]]
        return result
    parts, intercept = contributions(fitted, row[0])
    result.decision, result.intercept = float(intercept + parts.sum()), intercept
    if stored is None:
        result.probability = float(fitted.predict_proba(row)[0, 1])
    order = np.argsort(-np.abs(parts), kind="stable")

    def factor(j: int) -> Factor:
        label, value = describe(columns[j], raw, 0)
        return Factor(label, value, float(parts[j]))

    result.up = [factor(j) for j in order if parts[j] > 0][:top]
    result.down = [factor(j) for j in order if parts[j] < 0][:top]
    return result
