"""Why a contact scores as it does: the factors pushing its score up and down.

For the logistic model, a column's contribution is coefficient x (value - training mean) /
training standard deviation, in log-odds: the intercept plus every contribution is exactly the
model's decision value, and the calibrated probability is a monotone function of it. The factors
shown are the largest contributions each way, described in words with the contact's value
("pricing page views in last 30 days: 5"). They are computed from the contact's features as of
the time its stored score was computed, so they explain that score.

For gradient boosting, a factor is a field's exact Shapley value in the boosted trees' log-odds
(predictions.attribution): one per field (a category's one-hot columns together), compared with
training contacts stored with the version; the background's average log-odds plus every
contribution is exactly the model's raw score, and the calibrated probability is a non-decreasing
function of it. A boosting version trained before the background was kept shows the model's
global factors (permutation importance) and says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
from django.utils import timezone

from predictions.attribution import attributions, players
from predictions.encoding import describe, describe_player, encode
from predictions.features import read_features
from predictions.models import Algorithm, PropensityModel, PropensityScore, Tier
from predictions.scoring import NoUsableVersion, usable_version
from predictions.targets import in_population
from predictions.training import booster_of, logistic_parts

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
    decision: float | None = None  # log-odds: the logistic decision value, or boosting's raw score
    intercept: float | None = None  # where the contributions start: the intercept, or boosting's baseline
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
            explained.append(explain_contacts(score.model, [contact_id])[contact_id])
        except NoUsableVersion:
            continue
    return explained


def explain_contact(model: PropensityModel, contact_id: int, *, top: int = TOP_FACTORS) -> ContactScore:
    """The contact's stored score of `model` and the factors behind it."""
    return explain_contacts(model, [contact_id], top=top)[contact_id]


def explain_contacts(
    model: PropensityModel, contact_ids: list[int], *, top: int = TOP_FACTORS
) -> dict[int, ContactScore]:
    """Stored scores and factors of several contacts (a page of segment members): their features
    are read together, once per time their scores were computed."""
    version, fitted, _refused = usable_version(model)
    stored = {s.contact_id: s for s in PropensityScore.objects.filter(model=model, contact_id__in=contact_ids)}
    results: dict[int, ContactScore] = {}
    moments: dict[datetime, list[int]] = {}
    now = timezone.now()
    for contact_id in contact_ids:
        score = stored.get(contact_id)
        results[contact_id] = ContactScore(
            model=model.name,
            version=version.number,
            probability=score.probability if score else None,
            percentile=score.percentile if score else None,
            tier=score.tier if score else None,
            scored_at=score.scored_at if score else None,
            note=f"Not scored: the contact is outside the {model.name} model's population.",
        )
        moments.setdefault(score.scored_at if score else now, []).append(contact_id)
    for as_of, ids in moments.items():
        raw = read_features(as_of=as_of, volatile=version.features.get("volatile", []), contact_ids=ids)
        inside = in_population(model, raw)
        rows = encode(raw, version.features["columns"])
        if version.algorithm != Algorithm.LOGISTIC:
            _explain_boosted(results, version, fitted, raw, rows, np.flatnonzero(inside), top=top)
            continue
        for position, contact_id in enumerate(raw.contact_ids.tolist()):
            if inside[position]:
                _explain_row(results[contact_id], version, fitted, raw, rows, position, top=top)
    return results


def _explain_row(result: ContactScore, version, fitted, raw, rows: np.ndarray, position: int, *, top: int) -> None:
    result.note = ""
    columns = version.features["columns"]
    row = rows[position : position + 1]
    if result.probability is None:
        result.probability = float(fitted.predict_proba(row)[0, 1])
    parts, intercept = contributions(fitted, row[0])
    result.decision, result.intercept = float(intercept + parts.sum()), intercept
    order = np.argsort(-np.abs(parts), kind="stable")

    def factor(j: int) -> Factor:
        label, value = describe(columns[j], raw, position)
        return Factor(label, value, float(parts[j]))

    result.up = [factor(j) for j in order if parts[j] > 0][:top]
    result.down = [factor(j) for j in order if parts[j] < 0][:top]


def _explain_boosted(
    results: dict[int, ContactScore], version, fitted, raw, rows: np.ndarray, positions: np.ndarray, *, top: int
) -> None:
    """Factors of the contacts at `positions` under a boosting model, all computed together."""
    if not positions.size:
        return
    chosen = rows[positions]
    probabilities = fitted.predict_proba(chosen)[:, 1]
    contact_ids = raw.contact_ids[positions].tolist()
    if not version.background:
        for k, contact_id in enumerate(contact_ids):
            result = results[contact_id]
            if result.probability is None:
                result.probability = float(probabilities[k])
            result.note = (
                "This gradient-boosting version was trained before per-contact factors were kept; "
                "retrain the model to see them. The model's main factors are shown."
            )
            result.up = [Factor(item["label"], "", item["weight"]) for item in version.importance[:top]]
        return
    columns = version.features["columns"]
    groups = players(columns)
    booster = booster_of(fitted)
    background = np.array(version.background, dtype=np.float64)
    parts = attributions(booster, chosen, background, groups)
    decisions = booster.decision_function(chosen)
    baseline = float(booster.decision_function(background).mean())
    fields = [[columns[j] for j in group] for group in groups]
    for k, (contact_id, position) in enumerate(zip(contact_ids, positions.tolist(), strict=True)):
        result = results[contact_id]
        result.note = ""
        if result.probability is None:
            result.probability = float(probabilities[k])
        result.decision, result.intercept = float(decisions[k]), baseline
        result.up, result.down = _field_factors(parts[k], fields, raw, position, top=top)


def _field_factors(parts: np.ndarray, fields: list[list[dict]], raw, position: int, *, top: int):
    """(up, down): the largest contributions each way, one factor per field, in words."""
    order = np.argsort(-np.abs(parts), kind="stable")

    def factor(g: int) -> Factor:
        label, value = describe_player(fields[g], raw, position)
        return Factor(label, value, float(parts[g]))

    return [factor(g) for g in order if parts[g] > 0][:top], [factor(g) for g in order if parts[g] < 0][:top]
