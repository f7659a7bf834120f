"""Segment governance, part one: cadences and due dates, reviews with snapshots, refusals (issue 17)."""

from datetime import UTC, date, datetime

import pytest
from django.core.exceptions import ValidationError

from segments.editing import save_segment
from segments.governance.cadence import Cadence, add_months, due_after, schedules
from segments.governance.reviews import record_review
from segments.models import (
    Review,
    ReviewPolicy,
    RuleVersion,
    Segment,
    SegmentDay,
    SegmentStatus,
)
from tests.factories import ActivationFactory, SegmentFactory, UserFactory

MQL = {"field": "lifecycle_stage", "op": "eq", "value": "mql"}
SQL = {"field": "lifecycle_stage", "op": "eq", "value": "sql"}


@pytest.mark.parametrize(
    ("start", "months", "due"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),  # leap year
        (date(2027, 8, 31), 6, date(2028, 2, 29)),
        (date(2026, 11, 30), 3, date(2027, 2, 28)),
        (date(2026, 12, 15), 1, date(2027, 1, 15)),
        (date(2026, 3, 31), 1, date(2026, 4, 30)),
        (date(2028, 2, 29), 12, date(2029, 2, 28)),
    ],
)
def test_months_keep_the_day_or_fall_back_to_the_months_last(start, months, due):
    assert add_months(start, months) == due


def test_a_cadence_in_days_counts_calendar_days():
    assert due_after(date(2026, 2, 20), Cadence(10, "days", "segment")) == date(2026, 3, 2)


def _created(slug: str, at: datetime, **fields) -> Segment:
    segment = SegmentFactory(slug=slug, **fields)
    Segment.objects.filter(pk=segment.pk).update(created_at=at)
    segment.refresh_from_db()
    return segment


def test_due_dates_run_from_creation_with_the_strategy_defaults(db, settings):
    settings.TIME_ZONE = "UTC"
    segment = _created("new", datetime(2026, 1, 31, 9, tzinfo=UTC))

    due = schedules([segment])[segment.pk]

    assert {kind: d.due for kind, d in due.items()} == {
        "metrics": date(2026, 2, 28),
        "boundaries": date(2026, 4, 30),
        "strategy": date(2026, 7, 31),
    }


@pytest.mark.parametrize(("zone", "due"), [("America/New_York", date(2026, 2, 28)), ("Asia/Tokyo", date(2026, 3, 1))])
def test_the_due_date_counts_from_the_local_day_of_the_last_review(db, settings, zone, due):
    settings.TIME_ZONE = zone
    segment = _created("zoned", datetime(2025, 6, 1, tzinfo=UTC))
    # 23:30 UTC on Jan 31: still Jan 31 in New York, already Feb 1 in Tokyo.
    record_review(
        segment, kind="metrics", decision="keep", recorded_by="test", now=datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    )

    assert schedules([segment])[segment.pk]["metrics"].due == due


def test_a_segment_override_beats_its_category_default_and_a_policy_can_be_off(db):
    segment = _created("persona", datetime(2026, 1, 10, tzinfo=UTC), category="persona")
    other = _created("other-persona", datetime(2026, 1, 10, tzinfo=UTC), category="persona")
    ReviewPolicy.objects.create(category="persona", kind="metrics", every=2, unit="months")
    ReviewPolicy.objects.create(segment=segment, kind="metrics", every=14, unit="days")
    ReviewPolicy.objects.create(segment=segment, kind="strategy", enabled=False, disabled_reason="pilot ends in May")

    due = schedules([segment, other])

    assert due[segment.pk]["metrics"].due == date(2026, 1, 24)
    assert due[other.pk]["metrics"].due == date(2026, 3, 10)
    assert due[segment.pk]["strategy"].due is None
    assert due[segment.pk]["strategy"].state(date(2030, 1, 1), ahead_days=7) == "off"
    assert due[segment.pk]["strategy"].cadence.label == "off (pilot ends in May)"


def test_states_coming_due_and_overdue(db):
    segment = _created("states", datetime(2026, 1, 10, tzinfo=UTC))
    metrics = schedules([segment])[segment.pk]["metrics"]  # due 2026-02-10

    assert metrics.state(date(2026, 2, 2), ahead_days=7) == "ok"
    assert metrics.state(date(2026, 2, 3), ahead_days=7) == "coming"
    assert metrics.state(date(2026, 2, 10), ahead_days=7) == "due"
    assert metrics.state(date(2026, 2, 11), ahead_days=7) == "overdue"
    assert metrics.overdue_days(date(2026, 2, 25)) == 15


def test_schedules_of_many_segments_take_two_queries(db, django_assert_num_queries):
    segments = [SegmentFactory(category="persona") for _ in range(20)]
    ReviewPolicy.objects.create(category="persona", kind="metrics", every=2, unit="months")

    with django_assert_num_queries(2):
        due = schedules(segments)

    assert len(due) == 20


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"every": 0}, "every", "A cadence is 1 to 36 months; got 0."),
        ({"every": -5, "unit": "days"}, "every", "A cadence is 1 to 1096 days; got -5."),
        ({"every": 37}, "every", "A cadence is 1 to 36 months; got 37."),
        ({"unit": "weeks"}, "unit", "Value 'weeks' is not a valid choice."),
        ({"enabled": False}, "disabled_reason", "Say why reviews of this kind are switched off."),
        ({"category": ""}, "category", "A policy is either a category's default or one segment's override"),
    ],
)
def test_a_bad_policy_is_refused_naming_its_field(db, fields, field, message):
    policy = ReviewPolicy(**{"category": "persona", "kind": "metrics", **fields})

    with pytest.raises(ValidationError) as caught:
        policy.full_clean()

    assert caught.value.message_dict[field][0].startswith(message)


def test_a_review_keeps_a_snapshot_of_the_figures(db, settings):
    settings.TIME_ZONE = "UTC"
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    segment = SegmentFactory(slug="hot", size=150)
    SegmentDay.objects.create(segment=segment, day=date(2026, 3, 1), joins=100, leaves=0, size=100)
    SegmentDay.objects.create(segment=segment, day=date(2026, 5, 20), joins=20, leaves=0, size=120)
    SegmentDay.objects.create(segment=segment, day=date(2026, 6, 30), joins=30, leaves=0, size=150)
    activation = ActivationFactory(segment=segment, name="Ads audience")
    reviewer = UserFactory()

    review = record_review(
        segment, kind="metrics", decision="keep", reviewer=reviewer, recorded_by="me", notes="fine", now=now
    )

    snapshot = Review.objects.get(pk=review.pk).snapshot
    assert snapshot["size"] == 150
    assert snapshot["size_change"]["30d"] == {"size_then": 120, "change": 30, "percent": 25.0}
    assert snapshot["size_change"]["90d"] == {"size_then": 100, "change": 50, "percent": 50.0}
    assert snapshot["period"] == "2026-06"  # the last 30 days, here all of June
    assert {"what": "Activation (segment)", "name": str(activation)} in snapshot["usage"]
    assert set(snapshot) >= {"joins", "leaves", "engagement_rate", "conversion_rate", "revenue_per_contact"}
    assert (review.reviewer, review.decision, review.notes) == (reviewer, "keep", "fine")


def test_a_review_is_immutable(db):
    review = record_review(SegmentFactory(), kind="metrics", decision="keep", recorded_by="me")

    review.notes = "changed my mind"
    with pytest.raises(ValueError, match="immutable"):
        review.save()


def test_adjust_saves_the_new_rule_and_links_its_version(db):
    segment = save_segment(Segment(name="MQLs", slug="mqls", rule=MQL))
    reviewer = UserFactory()

    review = record_review(
        segment, kind="boundaries", decision="adjust", new_rule=SQL, recorded_by="me", reviewer=reviewer
    )

    segment.refresh_from_db()
    assert segment.rule == SQL
    assert (review.rule_version.old_rule, review.rule_version.new_rule) == (MQL, SQL)
    assert review.rule_version.changed_by == reviewer


def test_an_adjustment_cannot_bypass_the_approval_of_a_governed_segment(db):
    segment = SegmentFactory(rule=MQL)
    ActivationFactory(segment=segment)

    with pytest.raises(ValidationError) as refused:
        record_review(segment, kind="boundaries", decision="adjust", new_rule=SQL, recorded_by="me")

    assert "requires approval of rule changes" in refused.value.message_dict["decision"][0]
    segment.refresh_from_db()
    assert (segment.rule, Review.objects.count(), RuleVersion.objects.filter(segment=segment).count()) == (MQL, 0, 0)


def test_an_adjustment_with_a_bad_rule_writes_nothing(db):
    segment = save_segment(Segment(name="MQLs", slug="mqls", rule=MQL))

    with pytest.raises(ValidationError) as caught:
        record_review(
            segment, kind="boundaries", decision="adjust", recorded_by="me", new_rule={"field": "nope", "op": "eq"}
        )

    assert "rule" in caught.value.message_dict
    assert not Review.objects.exists()
    assert RuleVersion.objects.filter(segment=segment).count() == 1


def test_retire_archives_the_segment(db):
    segment = SegmentFactory()

    record_review(segment, kind="strategy", decision="retire", recorded_by="me")

    segment.refresh_from_db()
    assert segment.status == SegmentStatus.ARCHIVED


def test_retire_is_refused_while_something_depends_on_it_listing_them(db):
    segment = save_segment(Segment(name="Base", slug="base", rule=MQL))
    save_segment(Segment(name="Child", slug="child", rule=SQL, parent=segment))
    ActivationFactory(segment=segment)

    with pytest.raises(ValidationError) as caught:
        record_review(segment, kind="strategy", decision="retire", recorded_by="me")

    message = caught.value.message_dict["decision"][0]
    assert "child segment Child (child)" in message
    assert "1 activation (segment)" in message
    segment.refresh_from_db()
    assert segment.status == SegmentStatus.ACTIVE
    assert not Review.objects.exists()


def test_merge_archives_in_favour_of_the_survivor(db):
    segment, survivor = SegmentFactory(), SegmentFactory()

    review = record_review(segment, kind="strategy", decision="merge", merge_into=survivor, recorded_by="me")

    segment.refresh_from_db()
    assert (segment.status, review.merged_into) == (SegmentStatus.ARCHIVED, survivor)


def _refusal(segment: Segment, **kwargs) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        record_review(segment, recorded_by="me", **{"kind": "metrics", "decision": "keep", **kwargs})
    assert not Review.objects.exists()
    return caught.value.message_dict


def test_bad_reviews_are_refused_naming_the_field_and_nothing_is_written(db):
    segment = save_segment(Segment(name="Base", slug="base", rule=MQL))
    child = save_segment(Segment(name="Child", slug="child", rule=SQL, parent=segment))
    archived = SegmentFactory(slug="old", name="Old", status=SegmentStatus.ARCHIVED)

    assert _refusal(segment, decision="delete")["decision"] == [
        "'delete' is not a decision; use one of keep, adjust, merge, retire."
    ]
    assert _refusal(segment, kind="weekly")["kind"] == [
        "'weekly' is not a review kind; use one of metrics, boundaries, strategy."
    ]
    assert _refusal(archived)["segment"] == ["Segment 'Old' (old) is archived; archived segments are not reviewed."]
    assert _refusal(segment, decision="merge", merge_into=segment)["merged_into"] == [
        "A segment cannot be merged into itself (base)."
    ]
    assert (
        "would make a cycle: child -> base -> child"
        in _refusal(segment, decision="merge", merge_into=child)["merged_into"][0]
    )
    assert "archived" in _refusal(child, decision="merge", merge_into=archived)["merged_into"][0]
    assert _refusal(segment, decision="merge")["merged_into"] == ["A merge names the segment that survives it."]
    assert _refusal(segment, decision="adjust")["rule"] == ["An adjustment gives the new rule."]
    assert _refusal(segment, decision="adjust", new_rule=MQL)["rule"] == [
        "The new rule is the same as the current one; record 'keep' instead."
    ]
    assert _refusal(segment, merge_into=child)["merged_into"] == ["Only a merge names a surviving segment."]


# --- admin and API ---


def test_operations_record_a_review_in_the_admin(client, ops_user):
    segment = SegmentFactory(name="Hot leads")
    client.force_login(ops_user)

    page = client.get(f"/admin/segments/review/add/?segment={segment.pk}")
    response = client.post(
        "/admin/segments/review/add/",
        {"segment": segment.pk, "kind": "metrics", "decision": "keep", "notes": "looks right", "rule": ""},
    )

    assert page.status_code == 200
    assert b"What the review records about Hot leads" in page.content
    review = Review.objects.get()
    assert response.status_code == 302
    assert (review.reviewer, review.notes, review.recorded_by) == (
        ops_user,
        "looks right",
        f"user 'ops' (id {ops_user.pk})",
    )
    assert client.get(f"/segments/{segment.pk}/").content.count(b"looks right") == 1


def test_the_admin_form_shows_a_refusal_at_its_field(client, ops_user):
    segment = SegmentFactory(name="Hot leads")
    client.force_login(ops_user)

    response = client.post(
        "/admin/segments/review/add/",
        {"segment": segment.pk, "kind": "metrics", "decision": "merge", "merged_into": segment.pk, "rule": ""},
    )

    assert response.status_code == 200
    assert "A segment cannot be merged into itself" in response.content.decode()
    assert not Review.objects.exists()


def test_reviews_cannot_be_edited_or_deleted_in_the_admin(client, ops_user):
    review = record_review(SegmentFactory(), kind="metrics", decision="keep", recorded_by="me")
    client.force_login(ops_user)

    page = client.get(f"/admin/segments/review/{review.pk}/change/").content.decode()

    assert 'name="notes"' not in page
    assert client.post(f"/admin/segments/review/{review.pk}/delete/").status_code == 403


def test_the_api_lists_and_records_reviews_with_scopes(api_client):
    segment = SegmentFactory(slug="hot")
    reader, writer = api_client("segments:read"), api_client("segments:write")

    refused = reader.post("/api/v1/segments/hot/reviews/", {"kind": "metrics", "decision": "keep"}, format="json")
    created = writer.post(
        "/api/v1/segments/hot/reviews/", {"kind": "metrics", "decision": "keep", "notes": "ok"}, format="json"
    )
    listed = reader.get("/api/v1/segments/hot/reviews/")

    assert refused.status_code == 403
    assert created.status_code == 201, created.json()
    assert created.json()["recorded_by"].startswith("API key 'test integration'")
    assert [r["notes"] for r in listed.json()["results"]] == ["ok"]
    assert listed.json()["results"][0]["snapshot"]["size"] == segment.size
    assert writer.get("/api/v1/segments/hot/reviews/").status_code == 403  # write is not read


def test_the_api_refuses_a_bad_review_naming_the_field(api_client):
    SegmentFactory(slug="hot")
    writer = api_client("segments:write")

    bad = writer.post("/api/v1/segments/hot/reviews/", {"kind": "metrics", "decision": "drop"}, format="json")
    self_merge = writer.post(
        "/api/v1/segments/hot/reviews/", {"kind": "metrics", "decision": "merge", "merged_into": "hot"}, format="json"
    )
    unknown = writer.post(
        "/api/v1/segments/hot/reviews/", {"kind": "metrics", "decision": "keep", "score": 3}, format="json"
    )

    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "decision"
    assert "not a valid choice" in bad.json()["error"]["message"]
    assert self_merge.json()["error"]["field"] == "merged_into"
    assert unknown.json()["error"]["field"] == "score"
    assert not Review.objects.exists()


def test_a_backup_owner_is_saved_with_the_segment(db):
    segment = save_segment(Segment(name="MQLs", slug="mqls", rule=MQL))
    backup = UserFactory()

    segment.backup_owner = backup
    save_segment(segment)

    assert Segment.objects.get(pk=segment.pk).backup_owner == backup


def test_a_recorded_review_shows_its_snapshot_as_figures_not_json(client, ops_user, settings):
    settings.TIME_ZONE = "UTC"
    segment = SegmentFactory(name="Hot leads", size=1500, rule={"field": "lifecycle_stage", "op": "eq", "value": "mql"})
    SegmentDay.objects.create(segment=segment, day=date(2026, 3, 1), joins=1000, leaves=0, size=1000)
    SegmentDay.objects.create(segment=segment, day=date(2026, 5, 20), joins=200, leaves=0, size=1200)
    SegmentDay.objects.create(segment=segment, day=date(2026, 6, 30), joins=300, leaves=0, size=1500)
    ActivationFactory(segment=segment, name="Ads audience")
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    review = record_review(segment, kind="metrics", decision="keep", recorded_by="me", now=now)
    Segment.objects.filter(pk=segment.pk).update(size=10)  # the page shows what the review froze
    client.force_login(ops_user)

    page = client.get(f"/admin/segments/review/{review.pk}/change/").content.decode()

    assert "<th>Members</th><td>1,500</td>" in page
    assert "<th>Change over 30d</th><td>+300 (25.0%) from 1,200</td>" in page
    assert "<th>Change over 90d</th><td>+500 (50.0%) from 1,000</td>" in page
    assert "Ads audience" in page
    assert "&quot;op&quot;: &quot;eq&quot;" in page  # the rule as it stood, readable
    assert '"size_change"' not in page  # not the raw snapshot


def test_a_review_without_a_snapshot_shows_a_dash(client, ops_user):
    review = record_review(SegmentFactory(), kind="metrics", decision="keep", recorded_by="me")
    Review.objects.filter(pk=review.pk).update(snapshot={})
    client.force_login(ops_user)

    page = client.get(f"/admin/segments/review/{review.pk}/change/")

    assert page.status_code == 200
    assert '<div class="readonly">—</div>' in page.content.decode()
