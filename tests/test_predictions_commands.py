"""Training from the outside, each test with contacts of its own: the train_model command, its
refusals, and the django-q2 training task."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import OrmQ

from predictions.models import ModelVersion, PropensityModel, PropensityScore, VersionState
from predictions.tasks import enqueue_training
from predictions.training import TrainingBusy
from tests.predictions_support import NOW, plant_convert
from tests.segments_support import run_queued

pytestmark = pytest.mark.django_db
NOW_ISO = NOW.isoformat()


def test_train_model_defines_trains_and_prints_the_validation():
    plant_convert(1000)
    out = StringIO()

    call_command("train_model", "convert", "--target", "convert", "--horizon", "90", "--now", NOW_ISO, stdout=out)

    text = out.getvalue()
    version = ModelVersion.objects.get(model__name="convert")
    assert version.is_active
    assert f"AUC:           {version.metrics['auc']:.3f} (95% bootstrap interval" in text
    assert "model:         convert v1 (Active)" in text
    assert "precision:     top 1% " in text
    assert "... reading features as of 2025-12-03" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "No model named 'nope' (known: none yet); define one with --target."),
        (["convert", "--target", "convert", "--horizon", "45"], "horizon_days: Horizon 45 days is not allowed"),
        (["convert", "--target", "upsell"], "target: Unknown target 'upsell'"),
        (["convert", "--target", "convert", "--now", "yesterday"], "--now 'yesterday' is not an ISO datetime"),
    ],
)
def test_train_model_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("train_model", *args)
    assert not ModelVersion.objects.exists()


def test_train_model_refuses_too_few_outcomes_with_the_counts():
    plant_convert(250, hot_rate=0.1, cold_rate=0.02)

    with pytest.raises(CommandError, match=r"the training window has \d+ positives and [\d,]+ negatives"):
        call_command("train_model", "convert", "--target", "convert", "--now", NOW_ISO)
    assert ModelVersion.objects.get().state == VersionState.REFUSED


def test_the_training_task_records_its_state_and_scores(django_capture_on_commit_callbacks, monkeypatch):
    plant_convert(1000, now=timezone.now())  # the task trains as of now
    model = PropensityModel.objects.create(name="convert", target="convert", holdout="random")
    with django_capture_on_commit_callbacks(execute=True):
        version = enqueue_training(model)
    assert version.state == VersionState.QUEUED
    with pytest.raises(TrainingBusy, match="version 1 is queued"):
        enqueue_training(model)

    results = run_queued("predictions.tasks.train_task")

    version.refresh_from_db()
    assert results[0].startswith("convert v1: active, AUC ")
    assert version.state == VersionState.ACTIVE
    assert version.progress == "done"
    assert version.started_at <= version.finished_at
    assert version.scored_contacts == PropensityScore.objects.filter(model=model).count() > 0


def test_the_demo_model_is_defined_once_and_queued_for_the_worker(django_capture_on_commit_callbacks):
    call_command("define_demo_model", stdout=StringIO())
    assert not PropensityModel.objects.exists()  # no contacts: nothing to train on

    plant_convert(20)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("define_demo_model", stdout=StringIO())
        call_command("define_demo_model", stdout=StringIO())

    model = PropensityModel.objects.get()
    assert (model.name, model.target, model.horizon_days, model.holdout) == ("convert", "convert", 180, "random")
    assert ModelVersion.objects.get(model=model).state == VersionState.QUEUED
    assert [row.task["func"] for row in OrmQ.objects.all()] == ["predictions.tasks.train_task"]
