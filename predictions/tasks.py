"""Background work on propensity models (django-q2): training, scoring, the daily run.

Tasks take ids and record their state on the ModelVersion row (state, progress, message,
timestamps), which the model page shows. One training per model at a time: `queue_version`
refuses a second while one is queued or running (a partial unique constraint).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from predictions.models import ModelVersion, PropensityModel, VersionState
from predictions.scoring import NoUsableVersion, score_model, scored_models
from predictions.training import TrainingBusy, TrainingRefused, queue_version, train_version

DAILY_SCHEDULE = "predictions: score daily, retrain when due"


def enqueue_training(model: PropensityModel, *, user=None) -> ModelVersion:
    """Queue a training of `model` (TrainingBusy if one is queued or running) for a worker."""
    version = queue_version(model, user=user)
    timeout = settings.PREDICTIONS_TRAIN_TIMEOUT_SECONDS
    transaction.on_commit(
        lambda: async_task("predictions.tasks.train_task", version.pk, group="predictions", timeout=timeout)
    )
    return version


def train_task(version_id: int) -> str:
    """Train a queued version; when it becomes the active one, score every contact with it."""
    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    try:
        train_version(version)
    except TrainingRefused as refusal:
        return f"refused: {refusal}"
    version.refresh_from_db()
    if version.state != VersionState.ACTIVE:
        return f"{version}: {version.get_state_display()}"
    ModelVersion.objects.filter(pk=version.pk).update(progress="scoring contacts")
    summary = score_model(version.model)
    ModelVersion.objects.filter(pk=version.pk).update(progress="done")
    return f"{version}: active, AUC {version.metrics['auc']:.3f}, {summary.contacts} contacts scored"


def score_task(model_id: int, contact_ids: list[int] | None = None) -> str:
    model = PropensityModel.objects.get(pk=model_id)
    try:
        summary = score_model(model, contact_ids=contact_ids)
    except NoUsableVersion as missing:
        return str(missing)
    return (
        f"{model.name} v{summary.version}: {summary.contacts} contacts scored in {summary.duration_ms} ms "
        f"(measures {summary.measures})"
    )


def score_contacts_task(contact_ids: list[int]) -> str:
    """Re-score contacts touched by writes with every active model."""
    done = [score_task(model.pk, contact_ids) for model in scored_models()]
    return "; ".join(done) or "no active model"


def score_changed_contacts(contact_ids: list[int]) -> None:
    """contacts.changes deriver (in the catch-up task)."""
    if settings.PREDICTIONS_SCORE_ON_WRITE and contact_ids and scored_models():
        score_contacts_task(contact_ids)


def models_due(*, now: datetime | None = None) -> list[PropensityModel]:
    """Models whose active version was trained longer than their retrain_days ago."""
    now = now or timezone.now()
    due = []
    for model in PropensityModel.objects.all():
        active = model.active_version
        if active and active.finished_at and active.finished_at < now - timedelta(days=model.retrain_days):
            due.append(model)
    return due


def daily_task() -> str:
    """Score every active model's contacts; queue the retraining of models that are due."""
    lines = [score_task(model.pk) for model in scored_models()]
    for model in models_due():
        try:
            enqueue_training(model)
            lines.append(f"{model.name}: retraining queued")
        except TrainingBusy as error:
            lines.append(f"{model.name}: {error}")
    return "; ".join(lines) or "no active model"
