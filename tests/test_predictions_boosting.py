"""A gradient-boosting model's per-contact factors where users read them: the planted signal is
the main factor up for a lead who has it and down for one who lacks it, the factors add up to the
boosted score, a page of contacts costs the queries of one, and the contact page and the API show
them."""

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from contacts.models import Contact
from predictions.attribution import attributions, players
from predictions.encoding import encode
from predictions.explain import explain_contact, explain_contacts
from predictions.features import read_features
from predictions.models import Algorithm, ModelVersion, PropensityModel, PropensityScore
from predictions.scoring import score_model, usable_version
from predictions.training import booster_of, queue_version, train_version
from tests.predictions_support import NOW, plant_convert

pytestmark = pytest.mark.django_db


@pytest.fixture
def boosted():
    plant_convert(600, hot_vps=True)
    model = PropensityModel.objects.create(
        name="convert", target="convert", horizon_days=90, algorithm=Algorithm.BOOSTING
    )
    train_version(queue_version(model), now=NOW)
    score_model(model, now=NOW)
    return model


def _scored(model: PropensityModel, *, vp: bool) -> list[int]:
    scored = PropensityScore.objects.filter(model=model).values_list("contact_id", flat=True)
    leads = Contact.objects.filter(pk__in=scored)
    leads = leads.filter(seniority="vp") if vp else leads.exclude(seniority="vp")
    return sorted(leads.values_list("pk", flat=True))


def test_the_planted_signal_is_the_main_factor_up_for_a_vp_and_down_for_the_others(
    client, sales_user, api_client, boosted
):
    vps, others = _scored(boosted, vp=True)[:15], _scored(boosted, vp=False)[:15]

    explained = explain_contacts(boosted, vps + others)

    for pk in vps:
        assert (explained[pk].up[0].label, explained[pk].up[0].value) == ("seniority", "vp"), explained[pk].up
        assert str(explained[pk].up[0]) == "seniority: vp (+)"
    for pk in others:
        assert not any(f.label == "seniority" for f in explained[pk].up), explained[pk].up
        top = explained[pk].down[0]
        assert top.label == "seniority", explained[pk].down
        assert top.value in ("manager", "entry")
    assert all(not e.note for e in explained.values())
    # ... and so on the contact page a sales rep reads, and in the API.
    client.force_login(sales_user)
    html = client.get(reverse("contacts-detail", args=[vps[0]])).content.decode()
    assert "Factors raising the convert score" in html
    assert "<li>seniority: <strong>vp</strong> (+)</li>" in html
    assert "not available" not in html
    assert "retrain" not in html
    body = api_client("contacts:read").get(f"/api/v1/contacts/{others[0]}/scores/").json()
    score = body["scores"][0]
    assert score["note"] == ""
    assert score["down"][0]["text"] == f"seniority: {explained[others[0]].down[0].value} (-)"
    assert score["decision"] == pytest.approx(explained[others[0]].decision)


def test_the_factors_add_up_to_the_boosted_score_and_a_page_costs_the_queries_of_one(boosted):
    version, fitted, _ = usable_version(boosted)
    booster = booster_of(fitted)
    ids = _scored(boosted, vp=True)[:20] + _scored(boosted, vp=False)[:20]
    raw = read_features(as_of=NOW, contact_ids=ids)
    rows = encode(raw, version.features["columns"])
    background = np.array(version.background)

    parts = attributions(booster, rows, background, players(version.features["columns"]))

    baseline = booster.decision_function(background).mean()
    assert parts.sum(axis=1) + baseline == pytest.approx(booster.decision_function(rows), abs=1e-9)
    with CaptureQueriesContext(connection) as five:
        explain_contacts(boosted, ids[:5])
    with CaptureQueriesContext(connection) as forty:
        explained = explain_contacts(boosted, ids)
    assert len(forty) == len(five)
    for position, pk in enumerate(raw.contact_ids.tolist()):
        one = explained[pk]
        assert one.intercept == pytest.approx(baseline)
        assert one.decision == pytest.approx(booster.decision_function(rows[position : position + 1])[0])
        up, down = parts[position][parts[position] > 0], parts[position][parts[position] < 0]
        assert [f.contribution for f in one.up] == pytest.approx(sorted(up, reverse=True)[:5])
        assert [f.contribution for f in one.down] == pytest.approx(sorted(down)[:5])
        assert one.probability == PropensityScore.objects.get(model=boosted, contact_id=pk).probability


def test_a_version_trained_before_backgrounds_were_kept_shows_the_global_factors_and_says_so(boosted):
    ModelVersion.objects.filter(model=boosted).update(background=[])
    pk = _scored(boosted, vp=True)[0]

    explained = explain_contact(boosted, pk)

    assert "retrain the model to see them" in explained.note
    assert explained.up
    assert not explained.down
    assert explained.probability == PropensityScore.objects.get(model=boosted, contact_id=pk).probability
