"""Operations walk the governance flow in Chromium: the author edits the rule of a segment that feeds
an activation, sees the impact before saving, proposes it with a note; the author cannot approve it;
another Operations user reads the diff and impact, approves it, and records a metrics review."""

import json

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from segments.editing import save_segment
from segments.models import Review, RuleDraft, RuleVersion, Segment
from segments.refresh import refresh_segment
from tests.factories import ActivationFactory, ContactFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

MQL = {"field": "lifecycle_stage", "op": "eq", "value": "mql"}
MQL_OR_SQL = {"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]}
WIDE = {"width": 1400, "height": 1000}


def _ops(username: str):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name="Operations"))
    return user


def _governed_segment(owner) -> Segment:
    ContactFactory.create_batch(2, lifecycle_stage="mql")
    ContactFactory.create_batch(3, lifecycle_stage="sql")
    segment = save_segment(Segment(name="Hot leads", slug="hot-leads", rule=MQL, owner=owner))
    refresh_segment(segment.pk)
    ActivationFactory(segment=segment, name="Ads audience")
    return segment


def test_an_edit_waits_for_approval_by_another_user_then_a_review_is_recorded(page, log_in_as, screenshot):
    author, approver = _ops("ana"), _ops("ben")
    segment = _governed_segment(owner=approver)
    page.set_viewport_size(WIDE)

    # The author edits the rule: the builder shows who would join before anything is saved.
    log_in_as(author)
    page.goto(f"/admin/segments/segment/{segment.pk}/change/")
    page.get_by_text("Rule as JSON").click()
    page.locator("#id_rule").fill(json.dumps(MQL_OR_SQL))
    impact = page.locator("[data-rb-impact]")
    expect(impact.locator("[data-rb-impact-figures]")).to_have_text("+3 would join, −0 would leave: 2 → 5 members.")
    expect(impact.locator("[data-rb-impact-receivers]")).to_contain_text("“Ads audience”")
    screenshot("governance-impact-preview", page.locator(".rb-preview"))

    # Saving without a note is refused at the field; with one, the change becomes a draft.
    page.locator("input[name=_save]").click()
    expect(page.locator(".field-change_note .errorlist")).to_contain_text("requires approval of rule changes")
    page.locator("#id_change_note").fill("Sales asked for SQLs in the ads audience too")
    page.locator("input[name=_save]").click()
    expect(page.locator("#draft-status")).to_contain_text("Waiting for approval")
    expect(page.locator(".messagelist")).to_contain_text("waits for approval by another Operations user")
    expect(page.get_by_role("button", name="Approve and publish")).to_have_count(0)
    expect(page.locator("#draft-decision")).to_contain_text("another Operations user approves it")
    assert Segment.objects.get(pk=segment.pk).rule == MQL
    screenshot("governance-draft-author")

    # The approver reads the diff in words and the impact, and publishes it.
    page.context.clear_cookies()
    log_in_as(approver)
    draft = RuleDraft.objects.get()
    page.goto(f"/admin/segments/ruledraft/{draft.pk}/change/")
    changed = page.locator("table.rule-diff tr.changed td")
    expect(changed.nth(0)).to_have_text("Lifecycle stage is Marketing qualified lead")
    expect(changed.nth(1)).to_have_text("Lifecycle stage is one of Marketing qualified lead or Sales qualified lead")
    expect(page.locator("#impact .impact-joins")).to_have_text("+3")
    expect(page.locator("#draft-note")).to_contain_text("Sales asked for SQLs")
    screenshot("governance-draft-approver")
    page.get_by_role("button", name="Approve and publish").click()
    expect(page.locator(".messagelist")).to_contain_text("Published draft")
    expect(page.locator("#draft-status")).to_contain_text("Approved and published by ben")
    version = RuleVersion.objects.filter(segment=segment).first()
    assert (version.changed_by, version.approved_by, Segment.objects.get(pk=segment.pk).rule) == (
        author,
        approver,
        MQL_OR_SQL,
    )

    # The segment page's rule history names both, with the note.
    page.goto(f"/segments/{segment.pk}/")
    latest = page.locator("section[aria-labelledby=versions-heading] details").first
    expect(latest.locator("summary")).to_contain_text("by ana, approved by ben")
    expect(latest.locator(".rule-note")).to_have_text("Sales asked for SQLs in the ads audience too")

    # The owner records the monthly metrics review from the governance page.
    page.goto("/admin/segments/segment/governance/")
    expect(page.locator("#governance")).to_contain_text("Hot leads")
    page.goto(f"/admin/segments/review/add/?segment={segment.pk}&kind=metrics")
    expect(page.locator("#review-snapshot")).to_contain_text("What the review records about Hot leads")
    page.locator("#id_decision").select_option("keep")
    page.locator("#id_notes").fill("Size as expected after the SQL change")
    screenshot("governance-review-form")
    page.get_by_role("button", name="Record the review").click()
    expect(page.locator(".messagelist")).to_contain_text("Recorded the metrics review of Hot leads: keep")
    review = Review.objects.get()
    assert (review.segment, review.kind, review.decision, review.reviewer) == (segment, "metrics", "keep", approver)
    screenshot("governance-review-recorded")
