"""Segment governance, part two: health flags with their evidence, the governance page, CSV and API (issue 17)."""

import csv
import io
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts.models import Contact
from segments.governance import health
from segments.governance.health import candidate_pairs, check_health
from segments.governance.report import Filters, governance_report
from segments.governance.reviews import record_review
from segments.governance.tasks import daily_governance
from segments.models import Membership, Segment, SegmentDay, SegmentHealth, SegmentStatus
from tests.factories import (
    ActivationFactory,
    ContactFactory,
    PropertyDefinitionFactory,
    SegmentFactory,
    UserFactory,
)

OLD = timedelta(days=120)


def _segment(*, age: timedelta = OLD, **fields) -> Segment:
    segment = SegmentFactory(**fields)
    Segment.objects.filter(pk=segment.pk).update(created_at=timezone.now() - age)
    segment.refresh_from_db()
    return segment


def _flags(segment: Segment) -> dict[str, str]:
    """code -> evidence of every flag the governance report shows for the segment."""
    row = next(row for row in governance_report(Filters()).rows if row.segment.pk == segment.pk)
    return {flag.code: flag.evidence for flag in row.flags}


def _members(segment: Segment, contacts) -> None:
    Membership.objects.bulk_create([Membership(segment=segment, contact=c) for c in contacts])
    Segment.objects.filter(pk=segment.pk).update(size=len(contacts))


def test_never_reviewed_until_a_review_is_recorded(db):
    segment = _segment(owner=UserFactory())

    assert "no review since it was created on" in _flags(segment)["never_reviewed"]
    record_review(segment, kind="metrics", decision="keep", recorded_by="me")
    assert "never_reviewed" not in _flags(segment)


def test_an_overdue_review_names_the_kind_and_days(db):
    overdue = _segment(age=timedelta(days=45), owner=UserFactory())
    fresh = _segment(age=timedelta(days=10), owner=UserFactory())

    evidence = _flags(overdue)["review_overdue"]

    assert evidence.startswith("Metrics review due ")
    assert "days overdue" in evidence
    assert "review_overdue" not in _flags(fresh)


def test_a_segment_without_an_active_owner_is_flagged(db):
    gone = UserFactory(username="gone", is_active=False)
    nobody = _segment()
    left = _segment(owner=gone, backup_owner=UserFactory(username="standby"))
    owned = _segment(owner=UserFactory())

    assert _flags(nobody)["no_active_owner"] == "no owner"
    assert _flags(left)["no_active_owner"] == "owner gone is deactivated; backup standby stands in"
    assert "no_active_owner" not in _flags(owned)


def test_a_failing_refresh_shows_its_last_error(db):
    failing = _segment(last_refresh_status="failed", last_refresh_error="division by zero", refresh_failures=3)
    fine = _segment(last_refresh_status="ok")

    assert _flags(failing)["refresh_failing"] == "3 failed in a row; last error: division by zero"
    assert "refresh_failing" not in _flags(fine)


def test_empty_for_thirty_days_but_not_when_emptied_recently(db):
    today = timezone.localdate()
    long_empty, lately_empty, never_filled = _segment(size=0), _segment(size=0), _segment(size=0)
    SegmentDay.objects.create(segment=long_empty, day=today - timedelta(days=40), size=5, joins=5)
    SegmentDay.objects.create(segment=long_empty, day=today - timedelta(days=39), size=0, leaves=5)
    SegmentDay.objects.create(segment=lately_empty, day=today - timedelta(days=10), size=5, joins=5)
    SegmentDay.objects.create(segment=lately_empty, day=today - timedelta(days=9), size=0, leaves=5)
    young = _segment(size=0, age=timedelta(days=5))

    check_health()

    assert _flags(long_empty)["empty"] == f"no members since {today - timedelta(days=39)}"
    assert _flags(never_filled)["empty"] == "no members since it was created"
    assert "empty" not in _flags(lately_empty)
    assert "empty" not in _flags(young)


def test_a_size_swing_over_seven_days(db):
    today = timezone.localdate()
    doubled, steady = _segment(size=200), _segment(size=140)
    for segment in (doubled, steady):
        SegmentDay.objects.create(segment=segment, day=today - timedelta(days=7), size=100, joins=100)
    SegmentDay.objects.create(segment=doubled, day=today, size=200, joins=100)
    SegmentDay.objects.create(segment=steady, day=today, size=140, joins=40)

    check_health()

    assert _flags(doubled)["size_swing"] == f"100 → 200 members since {today - timedelta(days=7)} (+100%)"
    assert "size_swing" not in _flags(steady)


def test_unused_unless_activated_depended_on_or_read_through_the_api(db, api_client):
    unused, activated, parent, read, young = (
        _segment(),
        _segment(),
        _segment(),
        _segment(slug="read"),
        _segment(age=timedelta(days=10)),
    )
    ActivationFactory(segment=activated)
    SegmentFactory(parent=parent)
    assert api_client("segments:read").get("/api/v1/segments/read/").status_code == 200

    check_health()

    assert _flags(unused)["unused"].endswith("never read through the API")
    assert "no activation, automation, campaign variant, experiment" in _flags(unused)["unused"]
    for used in (activated, parent, read, young):
        assert "unused" not in _flags(used)


def test_an_api_read_is_recorded_at_most_once_an_hour(db, api_client, django_assert_num_queries):
    segment = SegmentFactory(slug="hot")
    client = api_client("segments:read", "contacts:read")
    client.get("/api/v1/segments/hot/members/")
    first = Segment.objects.get(pk=segment.pk).last_api_read_at

    client.get("/api/v1/segments/hot/")

    assert first is not None
    assert Segment.objects.get(pk=segment.pk).last_api_read_at == first


def test_a_rule_reading_a_sparsely_filled_field(db):
    PropertyDefinitionFactory(key="plan", type="text")
    contacts = ContactFactory.create_batch(10, job_title="Engineer")
    contacts[0].properties = {"plan": "pro"}
    contacts[0].save()
    sparse = _segment(rule={"all": [{"field": "props.plan", "op": "eq", "value": "pro"}]})
    full = _segment(rule={"field": "job_title", "op": "contains", "value": "eng"})

    check_health()

    assert _flags(sparse)["sparse_field"].endswith("(props.plan) is set for 10.0% of contacts (1 of 10)")
    assert "sparse_field" not in _flags(full)


def test_near_duplicates_by_the_jaccard_index_of_their_members(db):
    contacts = ContactFactory.create_batch(20)
    a, b, c = _segment(slug="a", name="A"), _segment(slug="b", name="B"), _segment(slug="c", name="C")
    _members(a, contacts[:20])
    _members(b, contacts[:19])  # 19 / 20 = 0.95
    _members(c, contacts[:10] + ContactFactory.create_batch(8))  # 10 / 28 with a

    check_health()

    assert _flags(a)["near_duplicate"] == "shares 19 members with B (b): Jaccard 0.95 (20 and 19 members)"
    assert _flags(b)["near_duplicate"] == "shares 19 members with A (a): Jaccard 0.95 (19 and 20 members)"
    assert "near_duplicate" not in _flags(c)


def _flagged_exactly(segments: list[Segment]) -> set[tuple[int, int]]:
    """The pairs a count of every close-sized pair's shared members would flag."""
    sizes = {s.pk: s.size for s in segments}
    shared = health.shared_members(candidate_pairs(sizes, threshold=0.9))
    return {(a, b) for (a, b), n in shared.items() if n / (sizes[a] + sizes[b] - n) >= 0.9}


def test_many_close_sized_segments_are_screened_by_sketches_and_flagged_exactly(db):
    """25 segments of 1,100-1,200 members (300 close-sized pairs, more than EXACT_PAIRS) and three
    of 10: the sketches rule most pairs out, the flags are those of counting every pair."""
    contacts = Contact.objects.bulk_create([Contact(email=f"dup{i}@example.com") for i in range(2000)])
    a, b = _segment(slug="a", name="A"), _segment(slug="b", name="B")
    _members(a, contacts[:1200])
    _members(b, contacts[40:1200])  # 1,160 of A's 1,200: Jaccard 0.967
    near = _segment(slug="near", name="Near")
    _members(near, contacts[200:1300])  # 1,000 shared with A of 1,300: 0.77, within the margin: counted
    others = []
    for n in range(22):  # 1,100 of the 2,000 each, shuffled apart: Jaccard about 0.4 with any other
        other = _segment(slug=f"other-{n}", name=f"Other {n}")
        _members(other, sorted(contacts, key=lambda c, n=n: (c.pk * (2 * n + 3) + 7 * n) % 2003)[:1100])
        others.append(other)
    d, e, f = _segment(slug="d", name="D"), _segment(slug="e", name="E"), _segment(slug="f", name="F")
    _members(d, contacts[:10])
    _members(e, contacts[:10])
    _members(f, contacts[10:20])
    segments = list(Segment.objects.all())
    assert len(candidate_pairs({s.pk: s.size for s in segments}, threshold=0.9)) > health.EXACT_PAIRS
    sketch = health.sketches([a.pk, b.pk, near.pk])
    assert abs(health.estimated_jaccard(sketch[a.pk], sketch[b.pk]) - 1160 / 1200) < 0.1
    assert abs(health.estimated_jaccard(sketch[a.pk], sketch[near.pk]) - 1000 / 1300) < 0.1

    check_health()

    assert _flags(a)["near_duplicate"] == "shares 1,160 members with B (b): Jaccard 0.97 (1,200 and 1,160 members)"
    assert _flags(d)["near_duplicate"] == "shares 10 members with E (e): Jaccard 1.00 (10 and 10 members)"
    assert "near_duplicate" not in _flags(near)
    assert "near_duplicate" not in _flags(f)
    flagged = {
        tuple(sorted(pair))
        for pair in health.near_duplicate_pairs({s.pk: s.size for s in segments}, threshold=0.9)
        if pair in _flagged_exactly(segments)
    }
    assert (
        flagged
        == {tuple(sorted(pair)) for pair in _flagged_exactly(segments)}
        == {
            tuple(sorted((a.pk, b.pk))),
            tuple(sorted((d.pk, e.pk))),
        }
    )


def test_only_pairs_of_close_sizes_are_candidates():
    assert candidate_pairs({1: 100, 2: 95, 3: 80, 4: 0, 5: 79}, threshold=0.9) == [(5, 3), (2, 1)]


def test_the_daily_job_stores_flags_and_forgets_archived_segments(db):
    kept, archived = _segment(size=0), _segment(size=0)
    check_health()
    Segment.objects.filter(pk=archived.pk).update(status=SegmentStatus.ARCHIVED)

    result = daily_governance()

    assert result == {"segments": 1, "flagged": 1}
    assert list(SegmentHealth.objects.values_list("segment_id", flat=True)) == [kept.pk]


def test_sprawl_counts_active_top_level_segments_that_are_not_suppressions(db, settings):
    settings.GOVERNANCE_PRIMARY_MIN, settings.GOVERNANCE_PRIMARY_MAX = 2, 3
    parent = SegmentFactory()
    SegmentFactory(parent=parent)
    SegmentFactory(kind="suppression")
    SegmentFactory(status=SegmentStatus.PAUSED)

    assert governance_report(Filters()).sprawl.verdict == "1 primary segments: fewer than the strategy's 2–3"


# --- the page, its CSV and the API ---


def test_the_governance_page_lists_filters_and_sorts_in_a_constant_number_of_queries(client, ops_user):
    client.force_login(ops_user)
    mine = _segment(name="Mine", owner=ops_user, size=0)
    SegmentFactory(name="Theirs", owner=UserFactory(), category="persona")

    def queries(count: int) -> int:
        SegmentFactory.create_batch(count, owner=UserFactory())
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/admin/segments/segment/governance/").status_code == 200
        return len(captured)

    assert queries(2) == queries(12)
    page = client.get("/admin/segments/segment/governance/?mine=1").content.decode()
    assert "Mine" in page
    assert "Theirs" not in page
    persona = client.get("/admin/segments/segment/governance/?category=persona").content.decode()
    assert "Theirs" in persona
    assert "Mine" not in persona
    overdue = client.get("/admin/segments/segment/governance/?overdue=1&sort=-overdue").content.decode()
    assert "Mine" in overdue
    assert f"?segment={mine.pk}" in overdue


def test_the_page_escapes_names_owners_and_evidence(client, ops_user):
    client.force_login(ops_user)
    owner = UserFactory(username="o<b>wner")
    segment = _segment(name='<script>alert("x")</script> & co', owner=owner, size=1234)
    SegmentHealth.objects.create(segment=segment, flags=[{"code": "c", "label": "<i>L</i>", "evidence": "a < b"}])

    page = client.get("/admin/segments/segment/governance/").content.decode()

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in page
    assert "o&lt;b&gt;wner" in page
    assert '<span class="flag">&lt;i&gt;L&lt;/i&gt;</span><div class="evidence">a &lt; b</div>' in page
    assert "1,234 members" in page


def test_a_bad_filter_on_the_page_says_what_was_wrong(client, ops_user):
    client.force_login(ops_user)

    response = client.get("/admin/segments/segment/governance/?sort=colour", follow=True)

    assert "is not a column; use one of name, owner" in response.content.decode()


def test_the_governance_csv(client, ops_user):
    client.force_login(ops_user)
    _segment(slug="csv-one", owner=ops_user)

    response = client.get("/admin/segments/segment/governance/?format=csv")

    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert response["Content-Type"].startswith("text/csv")
    assert rows[0][:3] == ["id", "slug", "name"]
    assert rows[1][1] == "csv-one"
    assert "Review overdue" in rows[1][rows[0].index("flags")]


def test_sales_cannot_open_the_governance_page(client, sales_user):
    client.force_login(sales_user)

    assert client.get("/admin/segments/segment/governance/").status_code == 403


def test_the_governance_api_with_scopes_and_filters(api_client):
    _segment(slug="old-one", size=0)
    SegmentFactory(slug="new-one", category="persona")

    body = api_client("segments:read").get("/api/v1/governance/", {"category": "persona"}).json()

    assert [row["slug"] for row in body["segments"]] == ["new-one"]
    assert body["total"] == 2
    assert set(body["segments"][0]["reviews"]) == {"metrics", "boundaries", "strategy"}
    assert api_client("contacts:read").get("/api/v1/governance/").status_code == 403
    bad = api_client("segments:read").get("/api/v1/governance/", {"overdue": "maybe"})
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "overdue")
    assert api_client("segments:read").get("/api/v1/governance/", {"colour": "red"}).status_code == 400
    for owner in ("0", "-535", str(2**63)):  # as the schema says: an id, 1 to 2**63 - 1
        refused = api_client("segments:read").get("/api/v1/governance/", {"owner": owner})
        assert (refused.status_code, refused.json()["error"]["field"]) == (400, "owner")


def test_ownership_is_reassigned_in_bulk(client, ops_user):
    client.force_login(ops_user)
    gone = UserFactory(username="gone", is_active=False)
    first, second = SegmentFactory(owner=gone), SegmentFactory(owner=gone)
    heir = UserFactory(username="heir", is_staff=True)

    form = client.post(
        "/admin/segments/segment/", {"action": "reassign_owner", "_selected_action": [first.pk, second.pk]}
    )
    done = client.post(
        "/admin/segments/segment/",
        {
            "action": "reassign_owner",
            "_selected_action": [first.pk, second.pk],
            "owner": heir.pk,
            "role": "owner",
            "apply": "1",
        },
    )

    assert b"Reassign owner" in form.content
    assert done.status_code == 302
    assert set(Segment.objects.filter(pk__in=[first.pk, second.pk]).values_list("owner__username", flat=True)) == {
        "heir"
    }
