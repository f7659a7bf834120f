"""Propensity models: point-in-time features, outcomes, training, refusal, the leakage check, validation."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from contacts.metrics.compute import compute_metrics
from contacts.models import Activity, Contact, ContactMetrics, LifecycleChange, PropertyDefinition
from predictions.features import read_features
from predictions.models import ModelVersion, PropensityModel, VersionState
from predictions.scoring import usable_version
from predictions.targets import in_population as in_population_of
from predictions.targets import target_errors
from predictions.training import TrainingBusy, TrainingRefused, queue_version, train_version
from tests.predictions_support import HORIZON, NOW, plant_convert

pytestmark = pytest.mark.django_db
T = NOW - HORIZON


def _contact_changing_after_the_cutoff() -> Contact:
    created = T - timedelta(days=200)
    contact = Contact.objects.create(email="moves@example.com", lifecycle_stage="lead", seniority="vp")
    Contact.objects.filter(pk=contact.pk).update(created_at=created)
    LifecycleChange.objects.filter(contact=contact).update(changed_at=created)
    for stage, at in (("mql", T - timedelta(days=10)), ("customer", T + timedelta(days=5))):
        LifecycleChange.objects.create(contact=contact, from_stage="x", to_stage=stage, changed_at=at)
    Contact.objects.filter(pk=contact.pk).update(
        lifecycle_stage="customer", lifecycle_changed_at=T + timedelta(days=5), seniority="vp"
    )
    for days in (3, 20, 100, -1, -30):  # negative: after the cutoff
        Activity.objects.create(contact=contact, kind="pricing_view", occurred_at=T - timedelta(days=days))
    Activity.objects.create(contact=contact, kind="purchase", occurred_at=T + timedelta(days=6), value=900)
    return contact


def test_features_are_the_contacts_values_at_the_cutoff():
    contact = _contact_changing_after_the_cutoff()
    later = Contact.objects.create(email="later@example.com")
    Contact.objects.filter(pk=later.pk).update(created_at=T + timedelta(days=1))

    raw = read_features(as_of=T)

    assert list(raw.contact_ids) == [contact.pk]  # created after the cutoff: not in the population
    codes, vocabulary = raw.categories["lifecycle_stage"]
    assert vocabulary[codes[0]] == "mql"  # customer only 5 days after the cutoff
    assert raw.numbers["days_in_stage"][0] == 10
    assert [raw.numbers[f"pricing_view_{d}d"][0] for d in (7, 30, 90, 365)] == [1, 2, 2, 3]
    assert raw.numbers["purchase_365d"][0] == 0
    assert raw.numbers["monetary"][0] == 0
    # The behavioural measures are those compute_metrics --as-of computes for the cutoff.
    compute_metrics(as_of=T)
    stored = ContactMetrics.objects.get(contact=contact)
    assert raw.numbers["activity_count"][0] == stored.activity_count == 3
    assert raw.numbers["engagement_score"][0] == pytest.approx(stored.engagement_score, rel=1e-6)
    assert raw.numbers["recent_activity_count"][0] == stored.recent_activity_count


def test_features_for_selected_contacts_match_the_full_read():
    contact = _contact_changing_after_the_cutoff()
    other = Contact.objects.create(email="other@example.com")
    Contact.objects.filter(pk=other.pk).update(created_at=T - timedelta(days=30))

    everyone = read_features(as_of=T)
    one = read_features(as_of=T, contact_ids=[contact.pk])

    row = list(everyone.contact_ids).index(contact.pk)
    assert list(one.contact_ids) == [contact.pk]
    for name, values in one.numbers.items():
        assert values[0] == pytest.approx(everyone.numbers[name][row], nan_ok=True), name


def test_custom_properties_and_tags_are_read_typed_as_declared():
    for key, kind in (("nps", "number"), ("beta", "bool"), ("tier", "choice"), ("tools", "tags")):
        PropertyDefinition.objects.create(key=key, label=key, type=kind, layer="value")
    typed = {"nps": 7, "beta": True, "tier": "gold", "tools": ["Jira", " slack ", "jira", 3]}
    wrong = {"nps": "7", "beta": 1, "tier": 5, "tools": "jira"}  # each of the wrong JSON type
    ids = []
    for email, properties in (("typed@example.com", typed), ("wrong@example.com", wrong), ("none@example.com", {})):
        contact = Contact.objects.create(email=email, properties=properties, technologies=["AWS", "aws", ""])
        Contact.objects.filter(pk=contact.pk).update(created_at=T - timedelta(days=30))
        ids.append(contact.pk)

    raw = read_features(as_of=T)

    assert list(raw.contact_ids) == ids
    assert raw.numbers["props.nps"].tolist()[0] == 7
    assert np.isnan(raw.numbers["props.nps"][1:]).all()
    assert raw.numbers["props.beta"].tolist()[0] == 1
    assert np.isnan(raw.numbers["props.beta"][1:]).all()
    codes, vocabulary = raw.categories["props.tier"]
    assert codes.tolist() == [0, -1, -1]
    assert vocabulary == ["gold"]
    rows, codes, vocabulary = raw.tags["props.tools"]
    assert rows.tolist() == [0, 0, 0]
    assert sorted(vocabulary[c] for c in codes) == ["3", "jira", "slack"]
    rows, codes, vocabulary = raw.tags["technologies"]
    assert rows.tolist() == [0, 1, 2]
    assert vocabulary == ["aws"]


def test_a_planted_signal_is_learned_and_a_planted_leak_is_flagged():
    plant_convert(1000, leak=True)
    model = PropensityModel.objects.create(name="convert", target="convert", horizon_days=90)
    version = queue_version(model)

    train_version(version, now=NOW)

    version.refresh_from_db()
    assert version.state == VersionState.ACTIVE
    assert version.is_active
    report = version.metrics
    assert report["auc"] > 0.7
    assert 0.5 < report["auc_low"] <= report["auc"] <= report["auc_high"]
    assert version.counts["training"]["positives"] >= 100
    assert [flag["feature"] for flag in version.leakage] == ["props.final_contract_value"]
    assert all(column["source"] != "props.final_contract_value" for column in version.features["columns"])
    # The signal (pricing views; activity counts move with them) leads the global importance.
    assert any(factor["column"].startswith("pricing_view_") for factor in version.importance[:5])
    assert not any(factor["column"].startswith("seniority") for factor in version.importance[:5])
    assert version.train_cutoff == NOW - 2 * HORIZON
    assert version.validation_cutoff == NOW - HORIZON
    assert report["lift"][0]["lift"] > 1.5
    assert report["band"] in ("fair", "good", "excellent")


def test_boosting_also_learns_the_signal():
    plant_convert(1000)
    model = PropensityModel.objects.create(name="convert_gb", target="convert", algorithm="boosting", holdout="random")
    version = queue_version(model)

    train_version(version, now=NOW)

    version.refresh_from_db()
    assert version.state == VersionState.ACTIVE
    assert version.metrics["auc"] > 0.7
    assert usable_version(model)[0] == version  # the stored boosting model loads


def test_fewer_than_100_positives_is_refused_with_the_counts():
    plant_convert(300, hot_rate=0.15, cold_rate=0.02)
    model = PropensityModel.objects.create(name="convert", target="convert", horizon_days=90)
    version = queue_version(model)

    with pytest.raises(TrainingRefused) as refusal:
        train_version(version, now=NOW)

    version.refresh_from_db()
    assert version.state == VersionState.REFUSED
    assert not version.is_active
    assert not version.artifact
    message = str(refusal.value)
    assert "positives" in message
    assert "at least 100 of each" in message
    assert "longer horizon" in message
    assert message == version.message
    trained = Contact.objects.filter(lifecycle_changes__to_stage="customer")
    window = trained.filter(
        lifecycle_changes__changed_at__gt=NOW - 2 * HORIZON, lifecycle_changes__changed_at__lte=NOW - HORIZON
    )
    assert f"has {window.count():,} positives" in message


def test_a_second_training_of_the_same_model_is_refused_while_one_is_queued():
    model = PropensityModel.objects.create(name="convert", target="convert")
    queue_version(model)

    with pytest.raises(TrainingBusy, match="already training"):
        queue_version(model)
    assert ModelVersion.objects.filter(model=model).count() == 1


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"target": "upsell"}, "target", "Unknown target 'upsell'"),
        ({"horizon_days": 45}, "horizon_days", "Horizon 45 days is not allowed; choose one of 30, 60, 90, 180, 365"),
        ({"target": "custom_field", "label_field": "props.nope"}, "label_field", "No custom property 'props.nope'"),
        ({"volatile_fields": ["lead_score", "shoe_size"]}, "volatile_fields", "Unknown field(s) shoe_size"),
    ],
)
def test_a_bad_definition_is_refused_naming_the_field(changes, field, message):
    model = PropensityModel.objects.create(name="bad", **{"target": "convert", "horizon_days": 90, **changes})
    version = queue_version(model)

    with pytest.raises(TrainingRefused, match=field):
        train_version(version, now=NOW)

    version.refresh_from_db()
    assert version.state == VersionState.REFUSED
    assert message in version.message


def test_a_custom_label_rule_with_an_error_names_its_json_path():
    model = PropensityModel.objects.create(
        name="custom",
        target="custom_rule",
        label_rule={"all": [{"field": "lifecycle_stage", "op": "eq", "value": "customer"}, {"field": "nope"}]},
    )
    version = queue_version(model)

    with pytest.raises(TrainingRefused, match=r"all\[1\]"):
        train_version(version, now=NOW)


def test_a_label_field_missing_for_most_contacts_is_refused():
    plant_convert(200)
    PropertyDefinition.objects.create(key="won", label="Won", type="bool", layer="value")
    first = Contact.objects.order_by("pk")[:20]
    for contact in first:
        contact.properties = {"won": True}
    Contact.objects.bulk_update(first, ["properties"])
    model = PropensityModel.objects.create(name="custom", target="custom_field", label_field="props.won")

    with pytest.raises(TrainingRefused, match=r"set for only 20 of 200 contacts \(10%\)"):
        train_version(queue_version(model), now=NOW)


def test_a_custom_rule_target_is_evaluated_at_the_end_of_the_horizon():
    plant_convert(1000)
    model = PropensityModel.objects.create(
        name="customers",
        target="custom_rule",
        holdout="random",
        label_rule={"field": "lifecycle_stage", "op": "eq", "value": "customer"},
    )
    version = queue_version(model)

    train_version(version, now=NOW)

    version.refresh_from_db()
    assert version.state == VersionState.ACTIVE
    assert version.metrics["auc"] > 0.6
    assert np.isclose(version.metrics["base_rate"], version.metrics["positives"] / version.metrics["contacts"])


def test_a_rule_holdout_validates_on_the_contacts_it_selects_and_trains_on_the_others():
    ids = plant_convert(1000)
    vps = set(Contact.objects.filter(pk__in=ids, seniority="vp").values_list("pk", flat=True))
    rule = {"field": "seniority", "op": "eq", "value": "vp"}
    model = PropensityModel.objects.create(name="convert", target="convert", holdout="rule", holdout_rule=rule)
    version = queue_version(model)
    cutoff = NOW - HORIZON
    raw = read_features(as_of=cutoff)
    in_population = set(raw.contact_ids[in_population_of(model, raw)].tolist())  # not customers at the cutoff

    train_version(version, now=NOW)

    version.refresh_from_db()
    assert version.state == VersionState.ACTIVE, version.message
    assert (version.holdout, version.holdout_rule) == ("rule", rule)
    counts = version.counts
    assert len(in_population & vps) > 100
    assert counts["validation"]["contacts"] == len(in_population & vps)
    assert counts["training"]["contacts"] == len(in_population - vps)
    assert version.train_cutoff == version.validation_cutoff == cutoff
    assert version.metrics["auc"] > 0.7  # the signal carries over to the vice presidents
    assert "rule holdout" not in version.message


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (None, "A rule holdout needs a rule selecting the validation contacts"),
        ({"field": "seniority", "op": "eq"}, "Invalid holdout rule: value:"),
        ({"all": [{"field": "nope", "op": "eq", "value": 1}]}, "Invalid holdout rule: all[0].field:"),
    ],
)
def test_a_rule_holdout_without_a_valid_rule_is_refused_naming_the_field(rule, message):
    errors = target_errors(PropensityModel(name="convert", target="convert", holdout="rule", holdout_rule=rule))

    assert list(errors) == ["holdout_rule"]
    assert errors["holdout_rule"].startswith(message)


def test_a_rule_holdout_selecting_too_few_contacts_is_refused_with_the_counts():
    plant_convert(1000)
    model = PropensityModel.objects.create(
        name="convert", target="convert", holdout="rule", holdout_rule={"field": "email", "op": "eq", "value": "x@y.z"}
    )

    with pytest.raises(TrainingRefused, match=r"the validation contacts \(the holdout rule's\) has 0 positives"):
        train_version(queue_version(model), now=NOW)


def test_a_field_filled_only_once_the_outcome_happened_is_flagged_even_when_sparse():
    plant_convert(1000)
    PropertyDefinition.objects.create(key="nps", label="NPS", type="number", layer="value")
    customers = list(Contact.objects.filter(lifecycle_stage="customer").order_by("pk"))
    asked = [c for i, c in enumerate(customers) if i % 5 < 3]  # 60% of customers answered the survey
    for contact in asked:
        contact.properties = {"nps": 8}
    Contact.objects.bulk_update(asked, ["properties"])
    model = PropensityModel.objects.create(name="convert", target="convert")
    version = queue_version(model)

    train_version(version, now=NOW)

    version.refresh_from_db()
    flag = next(flag for flag in version.leakage if flag["feature"] == "props.nps")
    assert "100% of the contacts it is set for had the outcome by now" in flag["reason"]


def test_a_training_whose_worker_stopped_does_not_block_the_model(settings):
    model = PropensityModel.objects.create(name="convert", target="convert")
    stuck = queue_version(model)
    ModelVersion.objects.filter(pk=stuck.pk).update(state="running", started_at=timezone.now())

    with pytest.raises(TrainingBusy):
        queue_version(model)  # running for less than the timeout
    settings.PREDICTIONS_TRAIN_TIMEOUT_SECONDS = 60
    ModelVersion.objects.filter(pk=stuck.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    fresh = queue_version(model)

    stuck.refresh_from_db()
    assert stuck.state == VersionState.FAILED
    assert "worker ended or timed out" in stuck.message
    assert fresh.number == 2


def test_a_version_already_taken_by_a_worker_is_not_trained_again():
    model = PropensityModel.objects.create(name="convert", target="convert")
    version = queue_version(model)
    ModelVersion.objects.filter(pk=version.pk).update(state="running", started_at=timezone.now())

    train_version(version, now=NOW)

    version.refresh_from_db()
    assert version.state == VersionState.RUNNING
    assert version.metrics == {}
