"""segments/ over the API: definitions, rule validation and preview, members and history."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.conf import Conf

from segments.models import Membership, MembershipChange, RuleVersion, Segment
from tests.factories import ContactFactory, SegmentFactory


@pytest.fixture
def reader(api_client):
    # Members, previews and rule checks on contact fields need contacts:read as well (test_api_scope_bypass.py).
    return api_client("segments:read", "contacts:read")


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


def test_preview_with_a_parent_counts_within_its_members_as_the_admin_preview_does(reader, client, ops_user):
    mqls = ContactFactory.create_batch(5, lifecycle_stage="mql")
    ContactFactory.create_batch(2, lifecycle_stage="customer")
    parent = SegmentFactory(slug="emea")
    Membership.objects.bulk_create(Membership(segment=parent, contact=c) for c in mqls[:3])
    rule = {"field": "lifecycle_stage", "op": "eq", "value": "mql"}

    body = reader.post("/api/v1/segments/preview/", {"rule": rule, "parent": "emea"}, format="json").json()
    client.force_login(ops_user)
    admin = client.post(
        "/segments/rules/preview/", {"rule": rule, "parent": parent.pk}, content_type="application/json"
    ).json()

    assert body["count"] == admin["count"] == 3
    assert [c["id"] for c in body["sample"]] == [c.pk for c in mqls[:3]]
    assert reader.post("/api/v1/segments/preview/", {"rule": rule, "parent": None}, format="json").json()["count"] == 5


def test_preview_with_an_unknown_parent_names_the_field(reader):
    rule = {"field": "lifecycle_stage", "op": "eq", "value": "mql"}

    response = reader.post("/api/v1/segments/preview/", {"rule": rule, "parent": "nope"}, format="json")

    assert response.status_code == 409  # as every reference to something not stored (api.errors.STATE_CODES)
    assert response.json()["error"]["field"] == "parent"


def test_preview_of_a_bad_rule_is_400_with_json_paths(reader):
    response = reader.post(
        "/api/v1/segments/preview/",
        {"rule": {"any": [{"field": "lead_score", "op": "gt", "value": "x"}]}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "rule.any[0].value"
    assert response.json()["error"]["message"].startswith("rule.any[0].value: ")


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

    # key, segment, page; reading members also records the API read (a conditional update, governance)
    for url, queries in [("/api/v1/segments/s/members/", 4), ("/api/v1/segments/s/history/", 3)]:
        with django_assert_num_queries(queries):
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


@pytest.fixture
def editor(api_client):
    return api_client("segments:read", "segments:write", "contacts:read")


def test_create_segment_queues_refresh_and_reports_rule_errors_by_path(editor, django_capture_on_commit_callbacks):
    ContactFactory(lifecycle_stage="mql")
    bad = editor.post(
        "/api/v1/segments/",
        {"name": "Bad", "slug": "bad", "rule": {"all": [{"field": "lifecycle_stage", "op": "gte", "value": 1}]}},
        format="json",
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "rule.all[0].op"
    assert not Segment.objects.filter(slug="bad").exists()

    with django_capture_on_commit_callbacks() as callbacks:
        created = editor.post(
            "/api/v1/segments/",
            {"name": "MQLs", "slug": "mqls", "rule": {"field": "lifecycle_stage", "op": "eq", "value": "mql"}},
            format="json",
        )

    assert created.status_code == 201, created.json()
    assert created.json()["slug"] == "mqls"
    assert callbacks  # the first refresh is queued after commit
    assert RuleVersion.objects.filter(segment__slug="mqls").exists()


def test_a_refused_segment_names_each_field_and_each_rule_path_at_once(editor):
    SegmentFactory(slug="kept", rule={"field": "lifecycle_stage", "op": "eq", "value": "mql"})
    body = {
        "name": "Bad",
        "slug": "bad",
        "is_global": True,  # only suppression segments can be global
        "rule": {"all": [{"field": "lifecycle_stage", "op": "gte", "value": 1}, {"in_segment": "nowhere"}]},
    }

    created = editor.post("/api/v1/segments/", body, format="json")
    changed = editor.patch("/api/v1/segments/kept/", {"rule": {"any": [{"in_segment": "nowhere"}]}}, format="json")

    assert created.status_code == 400
    assert {e["path"] for e in created.json()["error"]["details"]["errors"]} == {
        "is_global", "rule.all[0].op", "rule.all[1].in_segment"
    }  # fmt: skip
    assert changed.status_code == 400
    assert changed.json()["error"]["field"] == "rule.any[0].in_segment"
    assert Segment.objects.get(slug="kept").rule == {"field": "lifecycle_stage", "op": "eq", "value": "mql"}


def test_segment_cycle_is_refused_naming_it(editor):
    a = SegmentFactory(slug="a", rule={"field": "lifecycle_stage", "op": "eq", "value": "mql"})
    created = editor.post("/api/v1/segments/", {"name": "B", "slug": "b", "rule": {"in_segment": "a"}}, format="json")
    assert created.status_code == 201, created.json()

    response = editor.patch("/api/v1/segments/a/", {"rule": {"in_segment": "b"}}, format="json")

    assert response.status_code == 400
    assert "a -> b -> a" in response.json()["error"]["message"]
    a.refresh_from_db()
    assert a.rule == {"field": "lifecycle_stage", "op": "eq", "value": "mql"}


def test_segment_others_depend_on_cannot_be_deleted(editor):
    SegmentFactory(slug="a")
    SegmentFactory(slug="b", rule={"in_segment": "a"})
    editor.patch("/api/v1/segments/b/", {"rule": {"in_segment": "a"}}, format="json")  # records the reference

    response = editor.delete("/api/v1/segments/a/")

    assert response.status_code == 409
    assert "b" in response.json()["error"]["message"]
    assert editor.delete("/api/v1/segments/b/").status_code == 204


def test_refresh_queues_a_task_whose_status_can_be_read(editor, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 runs the task in-process, as a worker would
    member = ContactFactory(lifecycle_stage="mql")
    SegmentFactory(slug="mqls", rule={"field": "lifecycle_stage", "op": "eq", "value": "mql"})

    response = editor.post("/api/v1/segments/mqls/refresh/")

    assert response.status_code == 202
    task = editor.get(response.json()["status_url"]).json()
    assert task["status"] == "succeeded", task
    assert list(Membership.objects.filter(segment__slug="mqls").values_list("contact_id", flat=True)) == [member.pk]
    assert editor.get("/api/v1/tasks/0123456789abcdef0123456789abcdef/").status_code == 404


def test_static_members_add_and_remove(editor):
    SegmentFactory(slug="vip", kind="static", rule=None)
    SegmentFactory(slug="mqls")
    contacts = ContactFactory.create_batch(3)
    ids = [c.pk for c in contacts]

    added = editor.post("/api/v1/segments/vip/members/add/", {"contacts": [*ids, 999999]}, format="json").json()
    removed = editor.post("/api/v1/segments/vip/members/remove/", {"contacts": ids[:1]}, format="json").json()

    assert (added["changed"], removed["changed"], removed["size"]) == (3, 1, 2)
    assert MembershipChange.objects.filter(segment__slug="vip", reason="manual").count() == 4
    refused = editor.post("/api/v1/segments/mqls/members/add/", {"contacts": ids}, format="json")
    assert refused.status_code == 409


def test_segment_writes_need_segments_write(reader):
    response = reader.post("/api/v1/segments/", {"name": "x", "slug": "x"}, format="json")

    assert response.status_code == 403
    assert "'segments:write'" in response.json()["error"]["message"]
