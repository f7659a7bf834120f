import json

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from segments.editing import save_segment
from segments.models import Membership, MembershipChange, RuleVersion, Segment
from segments.refresh import refresh_segment
from tests.factories import ContactFactory

HOT = {"field": "lead_score", "op": "gte", "value": 50}


@pytest.fixture
def ops_client(client, ops_user):
    client.force_login(ops_user)
    return client


def _segment(slug: str, **fields) -> Segment:
    defaults = {"name": slug.title(), "slug": slug, "kind": "dynamic", "rule": HOT}
    return save_segment(Segment(**{**defaults, **fields}))


def _form(**fields) -> dict:
    data = {"name": "Hot leads", "slug": "hot-leads", "kind": "dynamic", "category": "engagement", "status": "active"}
    data.update(fields)
    return data


def test_the_list_shows_size_and_the_last_refresh_error(ops_client, django_assert_max_num_queries):
    ContactFactory(lead_score=80)
    ok = _segment("fine")
    refresh_segment(ok.pk)
    broken = _segment("broken")
    Segment.objects.filter(pk=broken.pk).update(
        last_refresh_status="failed", last_refresh_error="InvalidRule: props.tier: unknown field"
    )
    for n in range(10):
        _segment(f"more-{n}")

    with django_assert_max_num_queries(12):
        response = ops_client.get(reverse("admin:segments_segment_changelist"))

    assert response.status_code == 200
    assert "InvalidRule: props.tier: unknown field" in response.text
    assert "failed" in response.text.lower()


def test_adding_a_segment_saves_it_with_a_rule_version_by_the_user(ops_client, ops_user):
    response = ops_client.post(reverse("admin:segments_segment_add"), _form(rule=json.dumps(HOT)))

    assert response.status_code == 302, response.context["adminform"].form.errors
    segment = Segment.objects.get(slug="hot-leads")
    assert RuleVersion.objects.get(segment=segment).changed_by == ops_user
    assert OrmQ.objects.count() == 0  # the build is queued after commit (tests never commit)


def test_a_bad_rule_is_shown_on_the_form_with_its_json_path(ops_client):
    rule = {"all": [HOT, {"field": "lead_score", "op": "starts_with", "value": "x"}]}

    response = ops_client.post(reverse("admin:segments_segment_add"), _form(rule=json.dumps(rule)))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["rule"]
    assert any(error.startswith("all[1].op") for error in errors), errors
    assert not Segment.objects.exists()


def test_malformed_json_is_a_form_error_not_a_crash(ops_client):
    response = ops_client.post(reverse("admin:segments_segment_add"), _form(rule="{'all': ["))

    assert response.status_code == 200
    assert "rule" in response.context["adminform"].form.errors


def test_a_cycle_is_shown_on_the_form(ops_client):
    a = _segment("a")
    b = _segment("b", parent=a)

    response = ops_client.post(
        reverse("admin:segments_segment_change", args=[a.pk]),
        _form(name="A", slug="a", parent=b.pk, rule=json.dumps(HOT)),
    )

    assert response.status_code == 200
    assert "a -&gt; b -&gt; a" in response.text


def test_deleting_a_segment_others_depend_on_lists_them_and_deletes_nothing(ops_client):
    base = _segment("base")
    _segment("child", name="Child", parent=base)
    _segment("reader", name="Reader", rule={"in_segment": "base"})
    url = reverse("admin:segments_segment_delete", args=[base.pk])

    page = ops_client.get(url)
    ops_client.post(url, {"post": "yes"})

    assert "child segment Child (child)" in page.text
    assert "segment Reader (reader) reads it with in_segment" in page.text
    assert Segment.objects.filter(pk=base.pk).exists()


def test_static_members_are_added_by_email_or_id_and_removed(ops_client, ops_user):
    alice, bob = ContactFactory(email="alice@example.com"), ContactFactory()
    static = _segment("vip", kind="static", rule=None)
    url = reverse("admin:segments_segment_static_members", args=[static.pk])

    added = ops_client.post(url, {"operation": "add", "contacts": f"ALICE@example.com, {bob.pk}"})
    removed = ops_client.post(url, {"operation": "remove", "contacts": str(bob.pk)})

    assert added.status_code == removed.status_code == 302
    assert set(Membership.objects.filter(segment=static).values_list("contact_id", flat=True)) == {alice.pk}
    reasons = set(MembershipChange.objects.filter(segment=static).values_list("reason", "changed_by"))
    assert reasons == {("manual", ops_user.pk)}


def test_unknown_contacts_are_named_and_nothing_changes(ops_client):
    ContactFactory(email="alice@example.com")
    static = _segment("vip", kind="static", rule=None)

    response = ops_client.post(
        reverse("admin:segments_segment_static_members", args=[static.pk]),
        {"operation": "add", "contacts": "alice@example.com\nnobody@example.com\n999999"},
    )

    assert response.status_code == 200
    assert "No contact with these emails or ids: nobody@example.com, 999999" in response.text
    assert not Membership.objects.exists()


def test_refresh_now_queues_rule_segments_only(ops_client, django_capture_on_commit_callbacks):
    hot = _segment("hot")
    static = _segment("vip", kind="static", rule=None)

    with django_capture_on_commit_callbacks(execute=True):
        response = ops_client.post(
            reverse("admin:segments_segment_changelist"),
            {"action": "refresh_now", "_selected_action": [hot.pk, static.pk]},
            follow=True,
        )

    assert "Queued a refresh of 1 segment(s)" in response.text
    assert [task.task["args"] for task in OrmQ.objects.all()] == [(hot.pk,)]


def test_history_lists_render_with_a_constant_number_of_queries(ops_client, django_assert_max_num_queries):
    ContactFactory.create_batch(20, lead_score=90)
    refresh_segment(_segment("hot").pk)

    for name in ("membership", "membershipchange", "ruleversion"):
        with django_assert_max_num_queries(10):
            response = ops_client.get(reverse(f"admin:segments_{name}_changelist"))
        assert response.status_code == 200


def test_deleting_a_segment_nothing_depends_on_takes_its_history_along(ops_client):
    ContactFactory(lead_score=90)
    segment = _segment("hot")
    refresh_segment(segment.pk)
    url = reverse("admin:segments_segment_delete", args=[segment.pk])

    page = ops_client.get(url)
    response = ops_client.post(url, {"post": "yes"})

    assert "with its 1 memberships" in page.text
    assert response.status_code == 302
    assert not Segment.objects.exists()
    assert not MembershipChange.objects.exists()
