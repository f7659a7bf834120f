"""The rule builder's live preview and explain endpoints: staff only, errors by JSON path."""

import json

import pytest
from django.urls import reverse

from segments.models import Membership
from tests.factories import CompanyFactory, ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def post(client, name: str, payload) -> dict:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    response = client.post(reverse(name), body, content_type="application/json")
    return response.status_code, response.json()


def test_it_counts_matches_and_returns_ten_samples(client, ops_user):
    big = CompanyFactory(employee_count=5000)
    ContactFactory.create_batch(12, company=big, lifecycle_stage="mql")
    ContactFactory.create_batch(3, company=big, lifecycle_stage="customer")
    ContactFactory.create_batch(4, lifecycle_stage="mql")
    client.force_login(ops_user)
    rule = {
        "all": [
            {"field": "company.employee_count", "op": "gte", "value": 1000},
            {"any": [{"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]}]},
        ]
    }
    status, answer = post(client, "segments-rule-preview", {"rule": rule})
    assert status == 200
    assert answer["ok"] is True
    assert answer["count"] == 12
    assert len(answer["samples"]) == 10
    assert answer["samples"][0]["url"] == reverse("contacts-detail", args=[answer["samples"][0]["id"]])


def test_preview_queries_do_not_grow_with_the_samples(client, ops_user, django_assert_num_queries):
    rule = {"field": "lifecycle_stage", "op": "eq", "value": "mql"}
    ContactFactory(lifecycle_stage="mql", first_name="Ada", last_name="Lovelace")
    client.force_login(ops_user)
    # session, user, property definitions, propensity models, the count, the samples
    with django_assert_num_queries(6):
        _, one = post(client, "segments-rule-preview", {"rule": rule})
    ContactFactory.create_batch(11, lifecycle_stage="mql")
    with django_assert_num_queries(6):
        _, many = post(client, "segments-rule-preview", {"rule": rule})
    assert one["samples"][0]["name"] == "Ada Lovelace"
    assert len(many["samples"]) == 10


def test_it_counts_within_the_parent(client, ops_user):
    parent = SegmentFactory()
    inside = ContactFactory(lifecycle_stage="mql")
    ContactFactory(lifecycle_stage="mql")
    Membership.objects.create(segment=parent, contact=inside)
    client.force_login(ops_user)
    rule = {"field": "lifecycle_stage", "op": "eq", "value": "mql"}
    _, answer = post(client, "segments-rule-preview", {"rule": rule, "parent": str(parent.pk)})
    assert answer["count"] == 1
    assert [s["id"] for s in answer["samples"]] == [inside.pk]


def test_errors_name_the_offending_condition(client, ops_user):
    client.force_login(ops_user)
    rule = {
        "all": [
            {"field": "lead_score", "op": "gte", "value": 10},
            {"any": [{"field": "lead_score", "op": "contains_any", "value": ["x"]}, {"field": "nope", "op": "eq"}]},
        ]
    }
    status, answer = post(client, "segments-rule-preview", {"rule": rule})
    assert status == 200
    assert answer["ok"] is False
    paths = {error["path"] for error in answer["errors"]}
    assert "all[1].any[0].op" in paths
    assert any(path.startswith("all[1].any[1]") for path in paths)
    assert "count" not in answer


def test_an_empty_rule_and_a_broken_body_are_explained(client, ops_user):
    client.force_login(ops_user)
    _, answer = post(client, "segments-rule-preview", {"rule": None})
    assert answer["errors"][0]["message"] == "The rule is empty: add a condition."
    status, answer = post(client, "segments-rule-preview", "{not json")
    assert status == 400
    assert "Send a JSON object" in answer["errors"][0]["message"]


def test_explain_gives_every_condition_with_the_contacts_values(client, ops_user):
    contact = ContactFactory(email="ada@example.com", lead_score=70, lifecycle_stage="lead")
    client.force_login(ops_user)
    rule = {
        "any": [
            {"field": "lead_score", "op": "gte", "value": 50},
            {"field": "lifecycle_stage", "op": "eq", "value": "customer"},
        ]
    }
    _, answer = post(client, "segments-rule-explain", {"rule": rule, "contact": "ADA@example.com"})
    assert answer["ok"] is True
    assert answer["contact"]["id"] == contact.pk
    assert answer["result"] is True
    children = answer["tree"]["children"]
    assert [(c["path"], c["result"], c["value"]) for c in children] == [
        ("any[0]", True, 70),
        ("any[1]", False, "lead"),
    ]
    assert answer["reasons"] == ["Lead score is at least 50: 70"]
    _, by_id = post(client, "segments-rule-explain", {"rule": rule, "contact": str(contact.pk)})
    assert by_id["contact"]["email"] == "ada@example.com"


def test_explain_says_when_the_contact_is_unknown(client, ops_user):
    client.force_login(ops_user)
    _, answer = post(
        client, "segments-rule-explain", {"rule": {"field": "lead_score", "op": "gte", "value": 1}, "contact": "x@y.z"}
    )
    assert answer["ok"] is False
    assert answer["errors"][0]["message"] == "No contact with the email or id 'x@y.z'."


def test_sales_reps_and_strangers_are_refused(client, sales_user):
    rule = {"field": "lead_score", "op": "gte", "value": 1}
    assert (
        client.post(reverse("segments-rule-preview"), {"rule": rule}, content_type="application/json").status_code
        == 302
    )
    client.force_login(sales_user)
    for name in ("segments-rule-preview", "segments-rule-explain"):
        response = client.post(reverse(name), {"rule": rule}, content_type="application/json")
        assert response.status_code == 403


def test_preview_is_post_only(client, ops_user):
    client.force_login(ops_user)
    assert client.get(reverse("segments-rule-preview")).status_code == 405
