"""Train a propensity model: point-in-time features, outcomes, the leakage check, the fit, validation.

Holdout by time (the default): features as of now - 2 horizons, outcomes in the horizon after
it, for training; features as of now - 1 horizon and outcomes up to now for validation. The
validated model is the one that scores (no refit on other data after validation). Random
holdout: one cutoff (now - horizon; now for custom_field, which has no time axis), 25% of the
contacts held out, stratified. Rule holdout: the same cutoff, the contacts a rule selects at it
held out (a region, a lead source, a segment's members), the others trained on.

Logistic regression: standardised; the inverse regularisation C chosen among SEARCH_CS by
4-fold cross-validated log loss on at most SEARCH_ROWS training contacts, then fitted on all of
them. Histogram gradient boosting: scikit-learn's defaults with early stopping. Both calibrated
on 3-fold out-of-fold predictions (sigmoid for the logistic model, isotonic for boosting), one
final fit on every training contact (CalibratedClassifierCV with ensemble=False). A boosting
version also keeps BACKGROUND_ROWS of its training rows, which its per-contact factors compare
with (predictions.attribution).

Refused (state `refused`, nothing stored) with fewer than MIN_CLASS_ROWS positives or negatives
among the training contacts, or fewer than MIN_VALIDATION_ROWS of either in validation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

if TYPE_CHECKING:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier

from predictions import artifacts
from predictions.attribution import background_rows
from predictions.encoding import encode, fit_encoder, label_of
from predictions.evaluation import validation_report
from predictions.features import RawFeatures, read_features
from predictions.leakage import leakage_flags
from predictions.models import (
    AUC_TOLERANCE,
    MIN_CLASS_ROWS,
    Algorithm,
    Holdout,
    ModelVersion,
    PropensityModel,
    Target,
    VersionState,
)
from predictions.targets import (
    Window,
    in_population,
    label_values,
    outcomes,
    rule_members,
    target_errors,
    windows,
)

SEED = 20261206
SEARCH_ROWS = 100_000
SEARCH_CS = np.logspace(-3, 1, 5)
MIN_VALIDATION_ROWS = 20
IMPORTANCE_ROWS = 20_000

Progress = Callable[[str], None]
TRAINED_FIELDS = (
    "features",
    "counts",
    "metrics",
    "leakage",
    "importance",
    "background",
    "artifact",
    "artifact_signature",
    "train_cutoff",
    "validation_cutoff",
)


class TrainingRefused(ValueError):
    """The model cannot be trained as defined (too few outcomes, a bad definition)."""


class TrainingBusy(RuntimeError):
    """Another training of the same model is queued or running."""


def queue_version(model: PropensityModel, *, user=None) -> ModelVersion:
    """A new queued version of `model`; TrainingBusy if one is queued or running already.

    A version running for longer than PREDICTIONS_TRAIN_TIMEOUT_SECONDS lost its worker (killed,
    timed out): it is marked failed first, so it does not block the model forever."""
    stale = timezone.now() - timedelta(seconds=settings.PREDICTIONS_TRAIN_TIMEOUT_SECONDS)
    model.versions.filter(state=VersionState.RUNNING, started_at__lt=stale).update(
        state=VersionState.FAILED, message="Stopped without finishing: the worker ended or timed out.", progress=""
    )
    try:
        with transaction.atomic():
            number = (model.versions.aggregate(top=Max("number"))["top"] or 0) + 1
            return ModelVersion.objects.create(
                model=model,
                number=number,
                target=model.target,
                horizon_days=model.horizon_days,
                algorithm=model.algorithm,
                holdout=model.holdout,
                holdout_rule=model.holdout_rule if model.holdout == Holdout.RULE else None,
                requested_by=user,
            )
    except IntegrityError:
        running = model.versions.filter(state__in=[VersionState.QUEUED, VersionState.RUNNING]).first()
        what = f"version {running.number} is {running.state}" if running else "another training started"
        raise TrainingBusy(f"Model {model.name!r} is already training ({what}); wait for it to finish.") from None


@dataclass
class Dataset:
    raw: RawFeatures
    y: np.ndarray
    window: Window | None


def _labelled(model: PropensityModel, window: Window) -> Dataset:
    raw = read_features(as_of=window.cutoff, volatile=model.volatile_fields)
    raw = raw.take(np.flatnonzero(in_population(model, raw)))
    return Dataset(raw, outcomes(model, window, raw.contact_ids).astype(np.int8), window)


def _custom_field_data(model: PropensityModel, now: datetime) -> Dataset:
    positive, labelled = label_values(model)
    raw = read_features(as_of=now, volatile=model.volatile_fields)
    share = len(labelled) / max(len(raw), 1)
    if share < 0.5:
        raise TrainingRefused(
            f"Label field {model.label_field!r} is set for only {len(labelled):,} of {len(raw):,} contacts "
            f"({share:.0%}); at least half must have it. Fill it in or choose another field."
        )
    rows = np.flatnonzero(np.isin(raw.contact_ids, np.array(labelled, dtype=np.int64)))
    raw = raw.take(rows)
    y = np.isin(raw.contact_ids, np.array(positive, dtype=np.int64)).astype(np.int8)
    return Dataset(raw, y, None)


def _check_counts(y: np.ndarray, *, least: int, what: str, model: PropensityModel) -> None:
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives < least or negatives < least:
        raise TrainingRefused(
            f"Too few outcomes to train {model.name!r} ({model.target}, {model.horizon_days}-day horizon): "
            f"{what} has {positives:,} positives and {negatives:,} negatives; at least {least} of each are needed. "
            "Choose a longer horizon, a random holdout instead of a time holdout, or a broader target."
        )


def datasets(model: PropensityModel, *, now: datetime, progress: Progress) -> tuple[Dataset, Callable[[], Dataset]]:
    """The training contacts with their outcomes, and how to read the validation contacts with
    theirs. A time holdout reads its validation features only when asked, after the fit: held
    meanwhile (~300 MB at 1M contacts), they were part of the training's peak memory (the fit's
    copies of the matrix on top)."""
    if model.target == Target.CUSTOM_FIELD or model.holdout in (Holdout.RANDOM, Holdout.RULE):
        progress("reading features")
        if model.target == Target.CUSTOM_FIELD:
            data = _custom_field_data(model, now)
        else:
            data = _labelled(model, Window(now - timedelta(days=model.horizon_days), now))
        if model.holdout == Holdout.RULE:
            training, validation = _split_by_rule(model, data, at=data.window.cutoff if data.window else now)
            return training, lambda: validation
        _check_counts(data.y, least=MIN_CLASS_ROWS, what="the data", model=model)
        from sklearn.model_selection import train_test_split  # imported when first used

        train_rows, validation_rows = train_test_split(
            np.arange(len(data.y)), test_size=0.25, stratify=data.y, random_state=SEED
        )
        train_rows, validation_rows = np.sort(train_rows), np.sort(validation_rows)
        validation = Dataset(data.raw.take(validation_rows), data.y[validation_rows], data.window)
        return Dataset(data.raw.take(train_rows), data.y[train_rows], data.window), lambda: validation
    train_window, validation_window = windows(model, now=now)
    progress(f"reading features as of {train_window.cutoff:%Y-%m-%d}")
    training = _labelled(model, train_window)
    _check_counts(training.y, least=MIN_CLASS_ROWS, what="the training window", model=model)

    def read_validation() -> Dataset:
        progress(f"reading features as of {validation_window.cutoff:%Y-%m-%d}")
        data = _labelled(model, validation_window)
        _check_counts(data.y, least=MIN_VALIDATION_ROWS, what="the validation window", model=model)
        return data

    return training, read_validation


def _split_by_rule(model: PropensityModel, data: Dataset, *, at: datetime) -> tuple[Dataset, Dataset]:
    """Validate on the contacts the holdout rule selects at the cutoff, train on the others: a
    test of whether the model carries over to a group it never saw (a region, a source)."""
    held = np.isin(data.raw.contact_ids, np.fromiter(rule_members(model.holdout_rule, at), dtype=np.int64))
    train_rows, validation_rows = np.flatnonzero(~held), np.flatnonzero(held)
    training = Dataset(data.raw.take(train_rows), data.y[train_rows], data.window)
    validation = Dataset(data.raw.take(validation_rows), data.y[validation_rows], data.window)
    outside = "the training contacts (outside the holdout rule)"
    _check_counts(training.y, least=MIN_CLASS_ROWS, what=outside, model=model)
    _check_counts(
        validation.y, least=MIN_VALIDATION_ROWS, what="the validation contacts (the holdout rule's)", model=model
    )
    return training, validation


def fit(X: np.ndarray, y: np.ndarray, algorithm: str) -> tuple[CalibratedClassifierCV, dict]:
    """The calibrated model and what was chosen while fitting it."""
    # scikit-learn is imported when first used (predictions/__init__.py).
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold, train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    folds = StratifiedKFold(3, shuffle=True, random_state=SEED)
    if algorithm == Algorithm.LOGISTIC:
        rows = np.arange(len(y))
        if len(y) > SEARCH_ROWS:
            rows, _ = train_test_split(rows, train_size=SEARCH_ROWS, stratify=y, random_state=SEED)
        search = LogisticRegressionCV(
            Cs=SEARCH_CS,
            cv=StratifiedKFold(4, shuffle=True, random_state=SEED),
            scoring="neg_log_loss",
            l1_ratios=(0,),
            use_legacy_attributes=False,
            max_iter=500,
        )
        Pipeline([("scale", StandardScaler()), ("model", search)]).fit(X[rows], y[rows])
        C = float(np.ravel(search.C_)[0])
        base = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(C=C, max_iter=500))])
        calibrated = CalibratedClassifierCV(base, method="sigmoid", cv=folds, ensemble=False).fit(X, y)
        return calibrated, {"C": C, "search_rows": len(rows)}
    base = HistGradientBoostingClassifier(early_stopping=True, random_state=SEED)
    calibrated = CalibratedClassifierCV(base, method="isotonic", cv=folds, ensemble=False).fit(X, y)
    return calibrated, {"iterations": int(calibrated.calibrated_classifiers_[0].estimator.n_iter_)}


def logistic_parts(fitted: CalibratedClassifierCV) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, coefficients, intercept) of a fitted logistic model's standardised columns."""
    pipeline = fitted.calibrated_classifiers_[0].estimator
    scaler, model = pipeline.named_steps["scale"], pipeline.named_steps["model"]
    return scaler.mean_, scaler.scale_, model.coef_[0], float(model.intercept_[0])


def booster_of(fitted: CalibratedClassifierCV) -> HistGradientBoostingClassifier:
    """The boosted trees inside a fitted boosting model's calibration."""
    return fitted.calibrated_classifiers_[0].estimator


def importance(fitted, columns: list[dict], algorithm: str, X: np.ndarray, y: np.ndarray) -> list[dict]:
    """Global factor importance: |coefficient| per standard deviation (logistic), or the drop in
    validation AUC when the column is shuffled (boosting, on at most IMPORTANCE_ROWS contacts)."""
    if algorithm == Algorithm.LOGISTIC:
        _mean, _scale, coefficients, _intercept = logistic_parts(fitted)
        weights = [(float(abs(c)), 1 if c > 0 else -1) for c in coefficients]
    else:
        from sklearn.inspection import permutation_importance  # imported when first used

        rows = np.arange(len(y))[:IMPORTANCE_ROWS]
        result = permutation_importance(fitted, X[rows], y[rows], scoring="roc_auc", n_repeats=3, random_state=SEED)
        weights = [(float(max(v, 0.0)), 0) for v in result.importances_mean]
    ranked = sorted(range(len(columns)), key=lambda j: -weights[j][0])
    return [
        {
            "column": columns[j]["name"],
            "label": column_label(columns[j]),
            "weight": weights[j][0],
            "sign": weights[j][1],
        }
        for j in ranked
    ]


def column_label(column: dict) -> str:
    label = label_of(column["source"])
    if column["kind"] == "missing":
        return f"{label} unknown"
    if column["kind"] in ("onehot", "tag"):
        return f"{label}: {column['value']}"
    return label


def _counts(training: Dataset, validation: Dataset) -> dict:
    def of(data: Dataset) -> dict:
        positives = int(data.y.sum())
        return {"contacts": len(data.y), "positives": positives, "negatives": len(data.y) - positives}

    return {"training": of(training), "validation": of(validation)}


def train_version(version: ModelVersion, *, now: datetime | None = None, progress: Progress | None = None) -> None:
    """Train `version` (queued), recording its state, figures and model on the row; activate it when
    it validates at least as well as the active version (within AUC_TOLERANCE). A version that is
    no longer queued (another worker took it) is left alone."""
    started = time.monotonic()
    now = now or timezone.now()
    model = version.model

    def step(text: str) -> None:
        ModelVersion.objects.filter(pk=version.pk).update(progress=text)
        if progress:
            progress(text)

    # Claim the version: a task delivered twice (a broker retry) trains it once.
    claimed = ModelVersion.objects.filter(pk=version.pk, state=VersionState.QUEUED).update(
        state=VersionState.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return
    try:
        errors = target_errors(model)
        if errors:
            raise TrainingRefused("; ".join(f"{field}: {message}" for field, message in errors.items()))
        training, read_validation = datasets(model, now=now, progress=step)
        step("checking for leakage")
        eventually = training.y
        if training.window is not None and training.window.end < now:
            # The outcome at any time from the training cutoff up to now: a field filled in only
            # once the outcome happened is set for these contacts, whichever horizon it fell in.
            eventually = outcomes(model, Window(training.window.cutoff, now), training.raw.contact_ids)
        flags = leakage_flags(training.raw, training.y, eventually=eventually, seed=SEED)
        columns = fit_encoder(training.raw, exclude={flag["feature"] for flag in flags})
        step(f"fitting {model.algorithm} on {len(training.y):,} contacts and {len(columns)} columns")
        X = encode(training.raw, columns)
        # The training features are freed once encoded: the fit's copies of the matrix are the
        # peak of the process's memory (bench_predictions).
        training.raw = training.raw.take(np.zeros(0, dtype=np.int64))
        fitted, chosen = fit(X, training.y, model.algorithm)
        # Boosting's per-contact factors compare a contact with these training contacts.
        background = background_rows(X, seed=SEED) if model.algorithm == Algorithm.BOOSTING else []
        del X
        validation = read_validation()
        step("validating")
        X_validation = encode(validation.raw, columns)
        probabilities = fitted.predict_proba(X_validation)[:, 1]
        report = validation_report(validation.y, probabilities, seed=SEED)
        report["chosen"] = chosen
        ranked = importance(fitted, columns, model.algorithm, X_validation, validation.y)
        data, signature = artifacts.dump(fitted)
    except TrainingRefused as refusal:
        _finish(version, started, state=VersionState.REFUSED, message=str(refusal))
        raise
    except Exception as error:
        _finish(version, started, state=VersionState.FAILED, message=f"{type(error).__name__}: {error}")
        raise
    version.features = {"columns": columns, "volatile": list(model.volatile_fields)}
    version.counts = _counts(training, validation)
    version.metrics = report
    version.leakage = flags
    version.importance = ranked
    version.background = background
    version.artifact, version.artifact_signature = data, signature
    version.train_cutoff = training.window.cutoff if training.window else now
    version.validation_cutoff = validation.window.cutoff if validation.window else now
    # Only what training produced: the state, progress and times are written by their own updates.
    version.save(update_fields=[*TRAINED_FIELDS])
    _promote(version, started)


def _promote(version: ModelVersion, started: float) -> None:
    with transaction.atomic():
        active = ModelVersion.objects.select_for_update().filter(model=version.model, is_active=True).first()
        auc = version.metrics["auc"]
        if active and auc < active.metrics.get("auc", 0) - AUC_TOLERANCE:
            message = (
                f"Validation AUC {auc:.3f} is worse than the active version {active.number}'s "
                f"{active.metrics['auc']:.3f} by more than {AUC_TOLERANCE}: kept for review, not activated."
            )
            _finish(version, started, state=VersionState.REVIEW, message=message)
            return
        if active:
            ModelVersion.objects.filter(pk=active.pk).update(is_active=False, state=VersionState.RETIRED)
        _finish(version, started, state=VersionState.ACTIVE, message="", is_active=True)


def _finish(version: ModelVersion, started: float, *, state: str, message: str, is_active: bool = False) -> None:
    version.state, version.message, version.is_active = state, message, is_active
    version.finished_at = timezone.now()
    version.duration_ms = round((time.monotonic() - started) * 1000)
    ModelVersion.objects.filter(pk=version.pk).update(
        state=state,
        message=message,
        is_active=is_active,
        finished_at=version.finished_at,
        duration_ms=version.duration_ms,
    )


class CannotActivate(ValueError):
    """The version cannot be made the active one; the message says why."""


ACTIVATABLE = (VersionState.REVIEW, VersionState.RETIRED)


def activate_version(version: ModelVersion, *, by) -> ModelVersion | None:
    """Make a trained version the one that scores, by an operator's choice (a version kept for review
    because its AUC was lower, or an older one brought back); the active one is retired.

    Returns the version it replaced (None if there was none). Refused, with the reason, for a
    version that never finished training, failed, or whose model does not load (tampered or from an
    incompatible release). Scores follow when the model is next scored (the caller queues it).
    """
    if version.state not in ACTIVATABLE:
        raise CannotActivate(
            f"Version {version.number} is {version.get_state_display().lower()}; only a version kept for "
            "review or a retired one can be activated."
        )
    try:
        artifacts.load(version.artifact, version.artifact_signature)
    except artifacts.ArtifactRefused as refusal:
        raise CannotActivate(f"The model of version {version.number} does not load: {refusal}") from None
    with transaction.atomic():
        rows = ModelVersion.objects.select_for_update().filter(model=version.model)
        active = rows.filter(is_active=True).first()
        if not rows.filter(pk=version.pk, state__in=ACTIVATABLE).exists():
            raise CannotActivate(f"Version {version.number} changed meanwhile; reload the page.")
        if active is not None:
            ModelVersion.objects.filter(pk=active.pk).update(is_active=False, state=VersionState.RETIRED)
        replaced = f" in place of version {active.number}" if active else ""
        message = f"Activated by {by} on {timezone.localtime():%Y-%m-%d %H:%M}{replaced}."
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True, state=VersionState.ACTIVE, message=message)
    version.refresh_from_db()
    return active
