"""segments/ over the API: definitions, rule validation and preview, members and history."""

from datetime import timedelta

import pytest
from django.utils import timezone

from segments.models import Membership, MembershipChange
from tests.factories import ContactFactory, SegmentFactory


@pytest.fixture
def reader(api_client):
    return api_client("segments:read")


def test_list_and_retrieve_segments(reader):
    hot = SegmentFactory(slug="hot-leads", name="Hot leads", category="engagement")
    SegmentFactory(slug="customers", kind="static", rule=None)

    listed = reader.get("/api/v1/segments/", {"kind": "dynamic"}).json()["results"]
    detail = reader.get("/api/v1/segments/hot-leads/").json()

    assert [s["slug"] for s in listed] == ["hot-leads"]
    assert detail["rule"] == hot.rule
    assert reader.get("/api/v1/segments/nope/").status_code == 404


def test_validate_returns_every_error_with_its_path(reader):
    rule = {
        "all": [{"field": "lifecycle_stage", "op": "gte", "value": "mql"}, {"field": "nope", "op": "eq", "value": 1}]
    }

    body = reader.post("/api/v1/segments/validate/", {"rule": rule}, format="json").json()

    assert body["valid"] is False
    assert {e["path"] for e in body["errors"]} >= {"all[0].op", "all[1].field"}
    ok = reader.post(
        "/api/v1/segments/validate/", {"rule": {"field": "lifecycle_stage", "op": "eq", "value": "mql"}}, format="json"
    )
    assert ok.json() == {"valid": True, "errors": []}


def test_preview_counts_and_samples_without_saving(reader):
    mqls = ContactFactory.create_batch(12, lifecycle_stage="mql")
    ContactFactory(lifecycle_stage="customer")

    body = reader.post(
        "/api/v1/segments/preview/", {"rule": {"field": "lifecycle_stage", "op": "eq", "value": "mql"}}, format="json"
    ).json()

    assert body["count"] == 12
    assert [c["id"] for c in body["sample"]] == [c.pk for c in mqls[:10]]


def test_preview_of_a_bad_rule_is_400_with_json_paths(reader):
    response = reader.post(
        "/api/v1/segments/preview/",
        {"rule": {"any": [{"field": "lead_score", "op": "gt", "value": "x"}]}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "rule"
    assert response.json()["error"]["message"].startswith("rule: rule.any[0].value")


def test_members_page_by_contact_id_and_stay_stable_while_members_change(reader):
    segment = SegmentFactory(slug="s")
    contacts = ContactFactory.create_batch(6)
    Membership.objects.bulk_create(Membership(segment=segment, contact=c) for c in contacts)

    first = reader.get("/api/v1/segments/s/members/", {"page_size": 3}).json()
    Membership.objects.filter(contact=contacts[0]).delete()  # a refresh removes a member already seen
    newcomer = ContactFactory()
    Membership.objects.create(segment=segment, contact=newcomer)
    second = reader.get(first["next"]).json()

    assert [m["contact"]["id"] for m in first["results"]] == [c.pk for c in contacts[:3]]
    third = reader.get(second["next"]).json()
    assert [m["contact"]["id"] for m in second["results"]] == [c.pk for c in contacts[3:]]
    assert [m["contact"]["id"] for m in third["results"]] == [newcomer.pk]


@pytest.mark.parametrize("rows", [5, 50])
def test_members_and_history_lists_have_constant_queries(reader, django_assert_num_queries, rows):
    segment = SegmentFactory(slug="s")
    contacts = ContactFactory.create_batch(rows)
    Membership.objects.bulk_create(Membership(segment=segment, contact=c) for c in contacts)
    MembershipChange.objects.bulk_create(
        MembershipChange(segment=segment, contact=c, kind="join", reason="rule") for c in contacts
    )
    reader.get("/api/v1/segments/")

    for url in ["/api/v1/segments/s/members/", "/api/v1/segments/s/history/"]:
        with django_assert_num_queries(3):  # key, segment, page
            assert len(reader.get(url, {"page_size": rows}).json()["results"]) == rows
    with django_assert_num_queries(2):
        reader.get("/api/v1/segments/", {"page_size": rows})


def test_history_filters_by_kind_and_time(reader):
    segment = SegmentFactory(slug="s")
    contact = ContactFactory()
    now = timezone.now()
    old = MembershipChange.objects.create(
        segment=segment, contact=contact, kind="join", reason="rule", changed_at=now - timedelta(days=10)
    )
    left = MembershipChange.objects.create(
        segment=segment, contact=contact, kind="leave", reason="rule", changed_at=now
    )

    def ids(**params):
        return [c["id"] for c in reader.get("/api/v1/segments/s/history/", params).json()["results"]]

    assert ids() == [left.pk, old.pk]
    assert ids(kind="join") == [old.pk]
    assert ids(changed_after=(now - timedelta(days=1)).isoformat()) == [left.pk]


def test_segment_reads_need_segments_read(api_client):
    response = api_client("contacts:read").get("/api/v1/segments/")

    assert response.status_code == 403
    assert "'segments:read'" in response.json()["error"]["message"]


def test_contact_segments_with_explanation(reader):
    contact = ContactFactory(lifecycle_stage="mql")
    mqls = SegmentFactory(slug="mqls", name="MQLs", rule={"field": "lifecycle_stage", "op": "eq", "value": "mql"})
    vip = SegmentFactory(slug="vip", name="VIP", kind="static", rule=None)
    Membership.objects.create(segment=mqls, contact=contact)
    Membership.objects.create(segment=vip, contact=contact)

    plain = reader.get(f"/api/v1/contacts/{contact.pk}/segments/").json()
    explained = reader.get(f"/api/v1/contacts/{contact.pk}/segments/", {"explain": "1"}).json()

    assert [(m["slug"], m["kind"]) for m in plain] == [("mqls", "dynamic"), ("vip", "static")]
    assert plain[0]["explanation"] is None
    assert explained[0]["explanation"]["result"] is True
    assert explained[0]["explanation"]["tree"]["path"] == ""
    assert explained[1]["explanation"] is None


def test_contact_segments_rejects_unknown_parameters(reader):
    contact = ContactFactory()

    assert reader.get(f"/api/v1/contacts/{contact.pk}/segments/", {"why": "1"}).status_code == 400
    assert reader.get(f"/api/v1/contacts/{contact.pk}/segments/", {"explain": "maybe"}).status_code == 400
    assert reader.get("/api/v1/contacts/999999/segments/").status_code == 404
