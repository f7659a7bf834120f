"""Boundary tests and dimension comparison through the API: answers, and refusals naming the JSON path."""

import pytest

from api.models import Scope
from tests.test_segment_boundaries import LARGE, SMALL, plant


@pytest.mark.django_db
def test_a_boundary_test_answers_with_the_winner_and_suggested_cuts(api_client):
    plant(1500)

    response = api_client(Scope.SEGMENTS_READ).post(
        "/api/v1/analytics/boundaries/",
        {"field": "company.employee_count", "bracketings": [SMALL, LARGE]},
        format="json",
    )

    body = response.json()
    assert response.status_code == 200
    assert body["best"] == 1
    assert body["summary"].startswith("Bracketing 2 (1–99 / 100–499 / 500+)")
    assert [b["label"] for b in body["bracketings"][1]["brackets"]] == ["1–99", "100–499", "500+"]
    assert body["bracketings"][1]["brackets"][2]["outcome_rate"]["value"] > 0.2
    assert body["suggested"]["brackets"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"field": "company.employee_count", "bracketings": [SMALL, [{"from": 1, "to": 100}, {"from": 90}]]},
            "bracketings[1][1].from",
            "90 overlaps the bracket before",
        ),
        ({"field": "email", "bracketings": [SMALL, LARGE]}, "field", "'email' is a text field"),
        (
            {"field": "company.employee_count", "bracketings": [SMALL, [{"from": 1, "upto": 5}, {"from": 5}]]},
            "bracketings[1][0]",
            "a bracket is an object with 'from' and 'to'",
        ),
    ],
)
def test_bad_boundary_input_is_refused_naming_the_path(api_client, body, field, message):
    response = api_client(Scope.SEGMENTS_READ).post("/api/v1/analytics/boundaries/", body, format="json")

    assert response.status_code == 400
    assert field in response.content.decode()
    assert message in response.content.decode()


@pytest.mark.django_db
def test_a_dimension_comparison_names_the_winner(api_client):
    plant(1500)

    response = api_client(Scope.SEGMENTS_READ).post(
        "/api/v1/analytics/dimensions/", {"schemes": ["behavioral", "firmographic"]}, format="json"
    )

    body = response.json()
    assert response.status_code == 200
    assert body["winner"] == "behavioral"
    assert {s["scheme"] for s in body["schemes"]} == {"behavioral", "firmographic"}


@pytest.mark.django_db
def test_an_unknown_segment_is_refused(api_client):
    response = api_client(Scope.SEGMENTS_READ).post(
        "/api/v1/analytics/dimensions/", {"schemes": ["segments", "rfv"], "segments": ["nope"]}, format="json"
    )

    assert response.status_code == 400
    assert "segments: no segment with slug 'nope'" in response.content.decode()
