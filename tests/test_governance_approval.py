"""Approval before publish (issue 17 item 8): rule edits of governed segments wait as drafts until
another Operations user approves them; approval publishes atomically; own and stale drafts refused."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from contacts.models import PropertyDefinition
from segments.editing import save_segment
from segments.governance.approval import approve_draft, needs_approval, rebase_draft, reject_draft, save_or_propose
from segments.governance.impact import change_impact
from segments.models import DraftStatus, RuleDraft, RuleVersion, Segment
from segments.refresh import refresh_segment
from tests.factories import ActivationFactory, ContactFactory, PropertyDefinitionFactory, UserFactory

MQL = {"field": "lifecycle_stage", "op": "eq", "value": "mql"}
SQL = {"field": "lifecycle_stage", "op": "eq", "value": "sql"}
MQL_OR_SQL = {"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]}


def _ops(username: str):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name="Operations"))
    return user


def _governed(**fields) -> Segment:
    """A built segment (2 MQLs of 5 contacts) feeding an enabled activation."""
    ContactFactory.create_batch(2, lifecycle_stage="mql")
    ContactFactory.create_batch(3, lifecycle_stage="sql")
    segment = save_segment(Segment(name="Hot leads", slug="hot-leads", rule=MQL, **fields))
    refresh_segment(segment.pk)
    ActivationFactory(segment=segment, name="Ads audience")
    segment.refresh_from_db()
    return segment


def _propose(segment: Segment, rule: dict, *, author, note: str = "Widen to SQLs") -> RuleDraft:
    segment.rule = rule
    draft = save_or_propose(segment, user=author, note=note)
    assert draft is not None
    return draft


def test_segments_feeding_an_enabled_activation_require_approval_unless_switched_off(db):
    segment = _governed()
    assert needs_approval(segment)

    segment.activations.update(enabled=False)
    assert not needs_approval(segment)

    segment.requires_approval = True
    assert needs_approval(segment)
    segment.activations.update(enabled=True)
    segment.requires_approval = False
    assert not needs_approval(segment)


def test_an_edit_keeps_the_live_rule_and_makes_a_draft(db):
    segment = _governed()
    author = _ops("author")

    draft = _propose(segment, MQL_OR_SQL, author=author)

    segment.refresh_from_db()
    assert segment.rule == MQL
    assert (draft.status, draft.rule, draft.base_rule, draft.author) == ("pending", MQL_OR_SQL, MQL, author)
    assert RuleVersion.objects.filter(segment=segment).count() == 1  # only the creation


def test_a_governed_edit_needs_a_change_note_and_writes_nothing_without_it(db):
    segment = _governed()
    segment.rule = MQL_OR_SQL

    with pytest.raises(ValidationError) as refused:
        save_or_propose(segment, user=_ops("author"), note="  ")

    assert "requires approval" in refused.value.message_dict["change_note"][0]
    assert not RuleDraft.objects.exists()


def test_approval_by_another_operations_user_publishes_the_rule_with_author_and_approver(db):
    segment = _governed()
    author, approver = _ops("author"), _ops("approver")
    draft = _propose(segment, MQL_OR_SQL, author=author)

    version = approve_draft(draft, approver=approver)

    segment.refresh_from_db()
    draft.refresh_from_db()
    assert segment.rule == MQL_OR_SQL
    assert (version.changed_by, version.approved_by, version.note, version.size_before) == (
        author,
        approver,
        "Widen to SQLs",
        2,
    )
    assert (draft.status, draft.decided_by, draft.version) == (DraftStatus.APPROVED, approver, version)
    with pytest.raises(ValidationError, match="already approved"):
        approve_draft(draft, approver=approver)


def test_nobody_approves_their_own_draft_and_non_operations_users_cannot(db):
    segment = _governed()
    author = _ops("author")
    draft = _propose(segment, MQL_OR_SQL, author=author)

    with pytest.raises(ValidationError) as own:
        approve_draft(draft, approver=author)
    with pytest.raises(ValidationError) as outsider:
        approve_draft(draft, approver=UserFactory(username="guest", is_staff=True))

    assert "another Operations user approves it" in own.value.message_dict["approver"][0]
    assert "is not an Operations user" in outsider.value.message_dict["approver"][0]
    segment.refresh_from_db()
    draft.refresh_from_db()
    assert (segment.rule, draft.status) == (MQL, "pending")


def test_a_draft_made_stale_by_another_published_edit_must_be_rebased(db):
    segment = _governed()
    author, other, approver = _ops("author"), _ops("other"), _ops("approver")
    first = _propose(segment, MQL_OR_SQL, author=author)
    second = _propose(Segment.objects.get(pk=segment.pk), SQL, author=other, note="Only SQLs")
    approve_draft(second, approver=approver)

    with pytest.raises(ValidationError) as stale:
        approve_draft(first, approver=approver)

    assert "changed after this draft was made" in stale.value.message_dict["base_version"][0]
    assert "Rebase the draft" in stale.value.message_dict["base_version"][0]
    assert Segment.objects.get(pk=segment.pk).rule == SQL
    rebase_draft(first, user=author)
    first.refresh_from_db()
    assert first.base_rule == SQL
    approve_draft(first, approver=approver)
    assert Segment.objects.get(pk=segment.pk).rule == MQL_OR_SQL


def test_publishing_is_atomic_a_failed_approval_writes_nothing(db):
    segment = _governed()
    PropertyDefinitionFactory(key="tier", type="text")
    draft = _propose(segment, {"field": "props.tier", "op": "eq", "value": "gold"}, author=_ops("author"))
    PropertyDefinition.objects.filter(key="tier").delete()  # the draft's rule no longer validates

    with pytest.raises(ValidationError):
        approve_draft(draft, approver=_ops("approver"))

    draft.refresh_from_db()
    segment.refresh_from_db()
    assert (draft.status, draft.version, segment.rule) == ("pending", None, MQL)
    assert RuleVersion.objects.filter(segment=segment).count() == 1


def test_a_rejected_draft_leaves_the_live_rule(db):
    segment = _governed()
    draft = _propose(segment, MQL_OR_SQL, author=_ops("author"))

    reject_draft(draft, user=_ops("approver"), reason="Too broad for ads")

    draft.refresh_from_db()
    assert (draft.status, draft.decision_note) == ("rejected", "Too broad for ads")
    assert Segment.objects.get(pk=segment.pk).rule == MQL


def test_the_impact_of_a_draft_matches_the_refresh_after_publishing(db):
    segment = _governed()
    ContactFactory(lifecycle_stage="mql")  # not yet a member: the stored membership is behind
    draft = _propose(segment, SQL, author=_ops("author"))

    impact = change_impact(segment, rule=draft.rule, parent_id=None)
    approve_draft(draft, approver=_ops("approver"))
    result = refresh_segment(segment.pk)

    assert (impact.joins, impact.leaves, impact.size_after) == (3, 2, 3)
    assert (result.added, result.removed, result.size) == (impact.joins, impact.leaves, impact.size_after)
    assert [use.name for _, use in impact.receivers] == ["Ads audience"]
    assert all(
        sample.why.startswith("Matches: Lifecycle stage is Sales qualified lead") for sample in impact.join_sample
    )
    assert all(sample.why.startswith("Does not match") for sample in impact.leave_sample)


def _segment_form(segment: Segment, rule: str, note: str) -> dict:
    return {
        "name": segment.name, "slug": segment.slug, "description": "", "category": "other", "status": "active",
        "parent": "", "owner": "", "backup_owner": "", "requires_approval": "unknown", "rule": rule,
        "change_note": note,
    }  # fmt: skip


def test_the_admin_flow_edit_then_approve_on_the_draft_page(db, client):
    segment = _governed()
    author, approver = _ops("author"), _ops("approver")
    client.force_login(author)
    url = reverse("admin:segments_segment_change", args=[segment.pk])
    new_rule = '{"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]}'

    missing_note = client.post(url, _segment_form(segment, new_rule, ""))
    assert missing_note.status_code == 200
    assert "requires approval of rule changes" in missing_note.content.decode()

    response = client.post(url, _segment_form(segment, new_rule, "Widen to SQLs"))
    draft = RuleDraft.objects.get()
    assert response["Location"] == reverse("admin:segments_ruledraft_change", args=[draft.pk])
    page = client.get(response["Location"]).content.decode()
    assert "Lifecycle stage is one of Marketing qualified lead or Sales qualified lead" in page
    assert "would join" in page
    assert "Ads audience" in page
    assert 'value="approve"' not in page  # not for the author
    client.post(response["Location"], {"action": "approve"})
    assert Segment.objects.get(pk=segment.pk).rule == MQL

    client.force_login(approver)
    client.post(response["Location"], {"action": "approve"})
    assert Segment.objects.get(pk=segment.pk).rule == {"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]}


def test_the_api_makes_a_draft_and_only_a_person_other_than_the_author_approves(db, api_client):
    segment = _governed()
    key = api_client("segments:read", "segments:write", "contacts:read")

    made = key.patch(
        reverse("api:segment", args=[segment.slug]), {"rule": MQL_OR_SQL, "change_note": "Widen"}, format="json"
    )
    assert made.status_code == 202, made.json()
    draft_id = made.json()["id"]
    assert (
        made.json()["diff"][0]["after"] == "Lifecycle stage is one of Marketing qualified lead or Sales qualified lead"
    )
    detail = key.get(reverse("api:rule-draft", args=[draft_id])).json()
    assert (detail["impact"]["joins"], detail["impact"]["leaves"]) == (3, 0)

    by_key = key.post(reverse("api:rule-draft-approve", args=[draft_id]))
    assert by_key.status_code == 403
    assert by_key.json()["error"]["message"] == "A draft is approved by a person; an API key alone cannot approve."

    person = APIClient()
    person.force_login(_ops("approver"))
    approved = person.post(reverse("api:rule-draft-approve", args=[draft_id]))
    assert approved.status_code == 200, approved.json()
    assert approved.json()["status"] == "approved"
    assert Segment.objects.get(pk=segment.pk).rule == MQL_OR_SQL
    again = person.post(reverse("api:rule-draft-approve", args=[draft_id]))
    assert again.status_code == 409
