"""Rule history (issue 17 item 9): every rule version with author, note, the size before and after
and the two rules side by side in plain words, on the segment page, in the admin and the API."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from segments.editing import save_segment
from segments.models import RuleVersion, Segment
from segments.refresh import refresh_segment
from tests.factories import ContactFactory, UserFactory

MQL = {"field": "lifecycle_stage", "op": "eq", "value": "mql"}
MQL_OR_SQL = {"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]}


def _built_segment(**fields) -> Segment:
    ContactFactory.create_batch(2, lifecycle_stage="mql")
    ContactFactory.create_batch(3, lifecycle_stage="sql")
    segment = save_segment(Segment(name="Hot leads", slug="hot-leads", rule=MQL, **fields))
    refresh_segment(segment.pk)
    segment.refresh_from_db()
    return segment


def test_a_version_keeps_the_note_and_the_size_before_and_after_the_next_build(db):
    segment = _built_segment()
    author = UserFactory(username="ana")

    segment.rule = MQL_OR_SQL
    save_segment(segment, user=author, note="Sales asked for SQLs too")
    version = RuleVersion.objects.filter(segment=segment).first()
    assert (version.changed_by, version.note, version.size_before, version.size_after) == (
        author,
        "Sales asked for SQLs too",
        2,
        None,
    )

    refresh_segment(segment.pk)
    refresh_segment(segment.pk)  # a later refresh leaves the recorded size alone

    version.refresh_from_db()
    assert (version.size_before, version.size_after) == (2, 5)
    first = RuleVersion.objects.filter(segment=segment).last()
    assert (first.size_before, first.size_after) == (0, 2)


def test_the_segment_page_shows_the_change_in_words_with_its_note_and_sizes(client, ops_user):
    segment = _built_segment()
    segment.rule = MQL_OR_SQL
    save_segment(segment, user=ops_user, note="Sales asked for SQLs too")
    refresh_segment(segment.pk)
    client.force_login(ops_user)

    body = client.get(reverse("segments-detail", args=[segment.pk])).content.decode()

    assert "Lifecycle stage is Marketing qualified lead" in body
    assert "Lifecycle stage is one of Marketing qualified lead or Sales qualified lead" in body
    assert "Sales asked for SQLs too" in body
    assert "2 → 5 members" in body


def test_the_admin_shows_a_version_in_words_not_only_json(client, ops_user):
    segment = _built_segment()
    segment.rule = MQL_OR_SQL
    save_segment(segment, user=ops_user, note="wider")
    version = RuleVersion.objects.filter(segment=segment).first()
    client.force_login(ops_user)

    body = client.get(reverse("admin:segments_ruleversion_change", args=[version.pk])).content.decode()

    assert '<tr class="changed">' in body
    assert "Lifecycle stage is one of Marketing qualified lead or Sales qualified lead" in body
    assert "2 members before; after: not built yet" in body


def test_an_admin_edit_records_its_change_note(client, ops_user):
    segment = _built_segment(owner=None)
    client.force_login(ops_user)
    form = {
        "name": segment.name, "slug": segment.slug, "description": "", "category": "other", "status": "active",
        "parent": "", "owner": "", "backup_owner": "", "rule": '{"field": "lead_score", "op": "gte", "value": 50}',
        "change_note": "Scores are better than stages",
    }  # fmt: skip

    response = client.post(reverse("admin:segments_segment_change", args=[segment.pk]), form)

    assert response.status_code == 302, response.content.decode()[:2000]
    version = RuleVersion.objects.filter(segment=segment).first()
    assert (version.note, version.changed_by, version.new_rule["field"]) == (
        "Scores are better than stages",
        ops_user,
        "lead_score",
    )


def test_the_api_lists_versions_with_the_diff_in_words_in_a_fixed_number_of_queries(db, api_client):
    segment = _built_segment()
    for rule, note in ((MQL_OR_SQL, "wider"), (MQL, "back"), (MQL_OR_SQL, "again")):
        segment.rule = rule
        save_segment(segment, note=note)
    client = api_client("segments:read")
    url = reverse("api:segment-rule-versions", args=[segment.slug])
    client.get(url)  # the key's first use is recorded once

    with CaptureQueriesContext(connection) as queries:
        body = client.get(url).json()

    rows = body["results"]
    assert [row["note"] for row in rows] == ["again", "back", "wider", ""]
    assert rows[2]["size_before"] == 2
    assert rows[2]["diff"] == [
        {
            "change": "changed",
            "before": "Lifecycle stage is Marketing qualified lead",
            "before_depth": 0,
            "after": "Lifecycle stage is one of Marketing qualified lead or Sales qualified lead",
            "after_depth": 0,
        }
    ]
    assert rows[3]["diff"][0]["change"] == "added"  # the first version: nothing before
    for rule in (MQL, MQL_OR_SQL, MQL):
        segment.rule = rule
        save_segment(segment, user=UserFactory())
    with CaptureQueriesContext(connection) as more:
        assert len(client.get(url).json()["results"]) == 7
    assert len(more) == len(queries)  # nothing per version or author


def test_an_api_edit_records_its_change_note(db, api_client):
    segment = _built_segment()
    client = api_client("segments:read", "segments:write", "contacts:read")

    response = client.patch(
        reverse("api:segment", args=[segment.slug]), {"rule": MQL_OR_SQL, "change_note": "wider"}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert RuleVersion.objects.filter(segment=segment).first().note == "wider"
