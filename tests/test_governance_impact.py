"""Change impact preview (issue 17 item 7): before a rule change is saved, who would join and leave
(counted set-based against the stored members), the size after, explained samples, and what
receives the change downstream; the numbers agree with the refresh done after saving."""

import json

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from segments.editing import save_segment
from segments.governance.impact import change_impact
from segments.models import Segment
from segments.refresh import refresh_segment
from tests.factories import ActivationFactory, AutomationFactory, ContactFactory

MQL = {"field": "lifecycle_stage", "op": "eq", "value": "mql"}
SQL = {"field": "lifecycle_stage", "op": "eq", "value": "sql"}
HIGH_SCORE = {"field": "lead_score", "op": "gte", "value": 50}


def _built(slug: str, rule: dict, **fields) -> Segment:
    segment = save_segment(Segment(name=slug.replace("-", " ").title(), slug=slug, rule=rule, **fields))
    refresh_segment(segment.pk)
    segment.refresh_from_db()
    return segment


def _people(*, mql: int, sql: int) -> None:
    ContactFactory.create_batch(mql, lifecycle_stage="mql", lead_score=70)
    ContactFactory.create_batch(sql, lifecycle_stage="sql", lead_score=20)


def test_the_preview_counts_joins_and_leaves_that_the_refresh_after_saving_makes(db):
    _people(mql=3, sql=4)
    segment = _built("leads", MQL)
    ContactFactory(lifecycle_stage="sql", lead_score=90)  # joins under the new rule

    impact = change_impact(segment, rule=HIGH_SCORE, parent_id=None)
    segment.rule = HIGH_SCORE
    save_segment(segment)
    result = refresh_segment(segment.pk)

    assert (impact.size_now, impact.joins, impact.leaves, impact.size_after) == (3, 1, 0, 4)
    assert (result.added, result.removed, result.size) == (impact.joins, impact.leaves, impact.size_after)
    (sample,) = impact.join_sample
    assert sample.why == "Matches: Lead score is at least 50: 90"


def test_leaves_are_explained_and_a_new_parent_counts(db):
    _people(mql=3, sql=4)
    parent = _built("sql-only", SQL)
    segment = _built("leads", MQL)

    impact = change_impact(segment, rule=HIGH_SCORE, parent_id=parent.pk)

    assert (impact.joins, impact.leaves) == (0, 3)
    assert {sample.why for sample in impact.leave_sample} == {"Does not match: not a member of the parent segment"}


def test_downstream_segments_and_what_reads_them_receive_the_change(db):
    _people(mql=3, sql=1)
    segment = _built("leads", MQL)
    child = _built("hot-leads", HIGH_SCORE, parent=segment)
    ActivationFactory(segment=segment, name="Ads audience")
    AutomationFactory(trigger_segment=child, name="Welcome hot leads")

    impact = change_impact(segment, rule=SQL, parent_id=None)

    assert [s.slug for s in impact.downstream] == ["hot-leads"]
    assert [(name, use.name) for name, use in impact.receivers] == [
        ("", "Ads audience"),
        ("Hot Leads", "Welcome hot leads"),
    ]


def test_the_impact_takes_a_fixed_number_of_queries_whatever_the_population(db):
    _people(mql=2, sql=2)
    segment = _built("leads", MQL)
    ContactFactory(lifecycle_stage="lead", lead_score=60)
    with CaptureQueriesContext(connection) as few:
        change_impact(segment, rule=HIGH_SCORE, parent_id=None)
    _people(mql=40, sql=40)
    ContactFactory.create_batch(20, lifecycle_stage="lead", lead_score=60)
    refresh_segment(segment.pk)

    with CaptureQueriesContext(connection) as many:
        impact = change_impact(segment, rule=HIGH_SCORE, parent_id=None)

    assert impact.joins == 21
    assert len(many) == len(few)


def test_the_builder_preview_adds_the_impact_when_editing_a_saved_segment(client, ops_user):
    _people(mql=3, sql=4)
    segment = _built("leads", MQL)
    client.force_login(ops_user)
    url = reverse("segments-rule-preview")

    editing = client.post(url, json.dumps({"rule": SQL, "segment": segment.pk}), content_type="application/json")
    new = client.post(url, json.dumps({"rule": SQL}), content_type="application/json")

    impact = editing.json()["impact"]
    assert (impact["joins"], impact["leaves"], impact["size_after"]) == (4, 3, 4)
    assert impact["join_sample"][0]["url"].startswith("/contacts/")
    assert new.json()["impact"] is None
    change_page = client.get(reverse("admin:segments_segment_change", args=[segment.pk])).content.decode()
    assert f'data-segment-id="{segment.pk}"' in change_page
    assert "If saved now" in change_page


def test_the_api_previews_the_impact_with_samples_only_for_contacts_read(db, api_client):
    _people(mql=3, sql=4)
    segment = _built("leads", MQL)
    url = reverse("api:segment-impact", args=[segment.slug])
    in_segment = {"not": {"in_segment": "leads"}}

    full = api_client("segments:read", "contacts:read").post(url, {"rule": SQL}, format="json")
    counts_only = api_client("segments:read").post(url, {"rule": in_segment}, format="json")
    refused = api_client("segments:read").post(url, {"rule": SQL}, format="json")
    bad = api_client("segments:read", "contacts:read").post(url, {"rule": {"all": [{"op": "eq"}]}}, format="json")

    assert full.status_code == 200
    assert (full.json()["joins"], full.json()["leaves"], len(full.json()["join_sample"])) == (4, 3, 4)
    assert counts_only.status_code == 200
    assert (counts_only.json()["joins"], counts_only.json()["leaves"], counts_only.json()["join_sample"]) == (4, 3, [])
    assert refused.status_code == 403
    assert bad.status_code == 400
    assert "rule.all[0]" in json.dumps(bad.json())
