"""refresh_contacts at scale: stored percent thresholds, one statement per dependency level,
compiled statements reused across calls, and the explainer's detail on every change it writes
(filled by a task after commit)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact, PropertyDefinition
from segments import history
from segments.editing import save_segment
from segments.models import MembershipChange, Segment
from segments.refresh import refresh_all, refresh_contacts, refresh_segment
from segments.rules.compiler import matching_contacts
from segments.rules.explainer import explain
from tests.factories import ActivityFactory, ContactFactory, PropertyDefinitionFactory
from tests.segments_support import member_ids, run_queued

TOP_20 = {"field": "lead_score", "op": "top_percent", "value": 20}


@pytest.fixture
def ops_client(client, ops_user):
    client.force_login(ops_user)
    return client


def _segment(slug: str, rule: dict, **fields) -> Segment:
    segment = save_segment(Segment(name=slug, slug=slug, kind="dynamic", rule=rule, **fields))
    assert refresh_segment(segment.pk).status == "ok"
    segment.refresh_from_db()
    return segment


def _scores(*scores: int) -> list[Contact]:
    return [ContactFactory(lead_score=score) for score in scores]


# -- stored thresholds --------------------------------------------------------------------


def test_a_full_refresh_stores_the_threshold_it_built_the_segment_with(db):
    _scores(100, 90, 80, 70, 60, 50, 40, 30, 20, 10)

    top = _segment("top", TOP_20)

    assert top.percent_thresholds == {"lead_score top_percent 20": 90.0}
    assert len(member_ids(top)) == 2


def test_a_scoped_refresh_uses_the_stored_threshold_and_the_sweep_corrects_the_drift(db):
    contacts = _scores(100, 90, 80, 70, 60, 50, 40, 30, 20, 10)
    top = _segment("top", TOP_20)
    riser = contacts[-1]
    riser.lead_score = 95
    riser.save()

    refresh_contacts([riser.pk])

    # 95 reaches the stored threshold (90): the riser joins at once; the 90 pushed down stays.
    assert member_ids(top) == {contacts[0].pk, contacts[1].pk, riser.pk}
    refresh_all()
    assert member_ids(top) == {contacts[0].pk, riser.pk}  # the new threshold is 95
    top.refresh_from_db()
    assert top.percent_thresholds == {"lead_score top_percent 20": 95.0}


def test_scoped_and_full_refreshes_agree_when_nothing_else_changed(db):
    contacts = _scores(100, 90, 90, 80, 70, 60, 50, 40, 30, 20)
    PropertyDefinitionFactory(key="seats", type="number")
    for i, contact in enumerate(contacts):
        contact.properties = {"seats": i % 4}
        contact.save()
    _segment("top", TOP_20)
    _segment("bottom", {"field": "lead_score", "op": "bottom_percent", "value": 30})
    _segment("seats", {"not": {"field": "props.seats", "op": "top_percent", "value": 50}})
    changes = MembershipChange.objects.count()

    assert refresh_contacts([c.pk for c in contacts]) == []
    contacts[5].first_name = "Renamed"  # a change no rule reads
    contacts[5].save()
    assert refresh_contacts([contacts[5].pk]) == []
    assert MembershipChange.objects.count() == changes
    assert all(r.added == r.removed == 0 for r in refresh_all())


def test_the_explainer_uses_the_segments_stored_threshold_as_its_refreshes_do(db):
    contacts = _scores(100, 90, 80, 70, 60, 50, 40, 30, 20, 10)
    top = _segment("top", TOP_20)
    Contact.objects.filter(pk__in=[c.pk for c in contacts[2:7]]).update(lead_score=99)  # threshold drifts
    now = timezone.now()
    scoped_ids = [c.pk for c in contacts]

    stored = top.percent_thresholds
    compiled = set(
        matching_contacts(top.rule, now=now, contact_ids=scoped_ids, thresholds=stored).values_list("pk", flat=True)
    )
    for contact in contacts:
        explanation = explain(top.rule, contact, now=now, thresholds=stored)
        assert explanation.result == (contact.pk in compiled)
    assert explain(top.rule, contacts[1], now=now, thresholds=stored).result is True  # 90 >= stored 90
    assert explain(top.rule, contacts[1], now=now).result is False  # live: 99 x5 fill the top 20%


def test_a_threshold_over_no_set_values_keeps_everyone_out(db):
    ContactFactory(lifetime_value=None)
    segment = _segment("ltv", {"field": "lifetime_value", "op": "top_percent", "value": 50})
    contact = ContactFactory(lifetime_value=100)

    refresh_contacts([contact.pk])

    assert segment.percent_thresholds == {"lifetime_value top_percent 50": None}
    assert member_ids(segment) == set()


# -- statements ---------------------------------------------------------------------------


def _catalog(count: int) -> None:
    parent = _segment("parent", {"field": "lead_score", "op": "gte", "value": 10})
    for i in range(count):
        _segment(f"flat-{i}", {"field": "lead_score", "op": "gte", "value": 10 * i})
    _segment("child", {"field": "country", "op": "eq", "value": "US"}, parent=parent)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the level statements are PostgreSQL's")
def test_refresh_contacts_runs_one_statement_per_dependency_level_however_many_segments(db):
    contact = ContactFactory(lead_score=5, country="US")
    _catalog(3)
    with CaptureQueriesContext(connection) as few:
        refresh_contacts([contact.pk])
    _catalog_more = [_segment(f"more-{i}", {"field": "lead_score", "op": "lte", "value": i}) for i in range(6)]
    contact.lead_score = 50
    contact.save()

    with CaptureQueriesContext(connection) as many:
        changed = refresh_contacts([contact.pk])

    levels = [q for q in many.captured_queries if "scoped_contacts" in q["sql"]]
    assert len(levels) == 2  # parent and flat ones, then the child
    # details come from a task, queued with the transaction (the one more statement of a call that changed)
    queued = [q for q in many.captured_queries if "django_q_ormq" in q["sql"]]
    assert len(queued) == 1
    assert len(few.captured_queries) == len(many.captured_queries) - 1
    assert {r.slug for r in changed} >= {"parent", "child", "flat-1", "flat-2"}
    assert member_ids(Segment.objects.get(slug="child")) == {contact.pk}


def _level_plans() -> tuple[int, int]:
    """How many times this connection's prepared level statements ran a generic plan and a custom one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(sum(generic_plans), 0), COALESCE(sum(custom_plans), 0) FROM pg_prepared_statements"
            " WHERE statement LIKE '%%scoped_contacts%%'"
        )
        return tuple(int(n) for n in cursor.fetchone())


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
def test_a_few_contacts_reuse_the_generic_plan_and_a_large_chunk_is_planned_for_its_size(db, monkeypatch):
    few = ContactFactory.create_batch(2, lead_score=5, country="US")
    _catalog(2)
    more = ContactFactory.create_batch(3, lead_score=50)  # not members yet
    before = _level_plans()

    # two calls of a few contacts: each level statement is prepared once and runs its generic plan
    refresh_contacts([c.pk for c in few])
    refresh_contacts([few[0].pk])
    generic, custom = (after - was for after, was in zip(_level_plans(), before, strict=True))
    assert (generic, custom) == (4, 0)  # two levels, two calls

    # a chunk past GENERIC_PLAN_CONTACTS is planned for its own contacts, outside the prepared statements
    monkeypatch.setattr("segments.refresh.GENERIC_PLAN_CONTACTS", 2)
    changed = refresh_contacts([c.pk for c in more])
    assert tuple(after - was for after, was in zip(_level_plans(), before, strict=True)) == (4, 0)
    assert {r.slug for r in changed} >= {"flat-0", "parent"}  # and it did refresh them


def _catalog_queries(captured) -> list[str]:
    """The statements that read the catalog: the segments' rows and the field registry's."""
    tables = ("segments_segment", "contacts_propertydefinition", "predictions_propensitymodel")
    return [q["sql"] for q in captured.captured_queries if q["sql"].lstrip().startswith("SELECT") and
            any(f'FROM "{table}"' in q["sql"] for table in tables)]  # fmt: skip


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the catalog is kept on PostgreSQL only")
def test_refresh_contacts_keeps_the_catalog_until_a_segment_or_field_it_reads_changes(db):
    contact = ContactFactory(lead_score=60, properties={"tier": "gold"})
    PropertyDefinitionFactory(key="tier", type="choice", choices=["gold", "silver"])
    hot = _segment("hot", {"field": "lead_score", "op": "gte", "value": 50})
    gold = _segment("gold", {"field": "props.tier", "op": "eq", "value": "gold"})
    refresh_contacts([contact.pk])

    # an unchanged catalog is not read again: one statement checks its stamp
    with CaptureQueriesContext(connection) as unchanged:
        refresh_contacts([contact.pk])
    assert _catalog_queries(unchanged) == []

    # a rule saved since the last call is refreshed under the new rule
    hot.rule = {"field": "lead_score", "op": "gte", "value": 70}
    save_segment(hot)
    with CaptureQueriesContext(connection) as edited:
        changed = refresh_contacts([contact.pk])
    assert len(_catalog_queries(edited)) == 3  # the segments, the property definitions, the models
    assert [(r.slug, r.removed) for r in changed] == [("hot", 1)]

    # a property definition changed since (its choices) is read again: the registry changed
    PropertyDefinition.objects.filter(key="tier").update(choices=["gold", "silver", "bronze"])
    with CaptureQueriesContext(connection) as redefined:
        refresh_contacts([contact.pk])
    assert len(_catalog_queries(redefined)) == 3

    # a segment archived since is left alone, and a new built segment is refreshed
    Segment.objects.filter(pk=gold.pk).update(status="archived")
    _segment("warm", {"field": "lead_score", "op": "gte", "value": 40})
    Contact.objects.filter(pk=contact.pk).update(lead_score=45, properties={"tier": "silver"})
    changed = refresh_contacts([contact.pk])
    assert [r.slug for r in changed] == []  # already a member of warm (its build); gold not refreshed
    assert member_ids(Segment.objects.get(slug="gold")) == {contact.pk}
    Contact.objects.filter(pk=contact.pk).update(lead_score=30)
    assert [(r.slug, r.removed) for r in refresh_contacts([contact.pk])] == [("warm", 1)]


def test_a_reused_statement_measures_event_windows_from_each_calls_now(db):
    contact = ContactFactory()
    now = timezone.now()
    ActivityFactory(contact=contact, kind="email_click", occurred_at=now - timedelta(days=10))
    clicked = _segment("clicked", {"event": {"kind": "email_click"}, "op": "performed", "within_days": 20})
    renewing = _segment("renewing", {"field": "renewal_date", "op": "in_next_days", "value": 10})
    contact.renewal_date = timezone.localdate(now) + timedelta(days=20)
    contact.save()

    refresh_contacts([contact.pk], now=now)
    assert (member_ids(clicked), member_ids(renewing)) == ({contact.pk}, set())
    refresh_contacts([contact.pk], now=now + timedelta(days=5))  # same statements, shifted parameters
    assert (member_ids(clicked), member_ids(renewing)) == ({contact.pk}, set())
    refresh_contacts([contact.pk], now=now + timedelta(days=15))

    assert (member_ids(clicked), member_ids(renewing)) == (set(), {contact.pk})


def test_custom_date_properties_shift_with_now_too(db):
    PropertyDefinitionFactory(key="trial_ends", type="date")
    now = timezone.now()
    ends = timezone.localdate(now) + timedelta(days=3)
    contact = ContactFactory(properties={"trial_ends": ends.isoformat()})
    ending = _segment("trial-ending", {"field": "props.trial_ends", "op": "in_next_days", "value": 7})

    refresh_contacts([contact.pk], now=now)
    assert member_ids(ending) == {contact.pk}
    refresh_contacts([contact.pk], now=now + timedelta(days=5))

    assert member_ids(ending) == set()


# -- detail -------------------------------------------------------------------------------


def test_a_contact_joining_because_its_score_rose_has_a_detail_naming_the_condition(db, with_details):
    contact = ContactFactory(lead_score=20, country="US")
    hot = _segment(
        "hot",
        {"all": [{"field": "lead_score", "op": "gte", "value": 50}, {"field": "country", "op": "eq", "value": "US"}]},
    )
    contact.lead_score = 80
    contact.save()

    with with_details():
        refresh_contacts([contact.pk])

    change = MembershipChange.objects.get(segment=hot, contact=contact)
    assert (change.kind, change.reason) == ("join", "rule")
    assert change.detail["result"] is True
    by_path = {c["path"]: c for c in change.detail["conditions"]}
    assert by_path["all[0]"]["label"] == "Lead score is at least 50"
    assert (by_path["all[0]"]["value"], by_path["all[0]"]["result"]) == (80, True)
    assert by_path["all[0]"]["text"] == "Lead score is at least 50: 80"


def test_a_leave_names_the_condition_that_no_longer_holds(db, with_details):
    contact = ContactFactory(lead_score=80, country="US")
    hot = _segment(
        "hot",
        {"all": [{"field": "lead_score", "op": "gte", "value": 50}, {"field": "country", "op": "eq", "value": "US"}]},
    )
    contact.country = "DE"
    contact.save()

    with with_details():
        refresh_contacts([contact.pk])

    change = MembershipChange.objects.get(segment=hot, contact=contact, kind="leave")
    assert change.detail["result"] is False
    assert [c["text"] for c in change.detail["conditions"]] == ["Country is “US”: DE"]


def test_details_of_several_segments_come_from_their_own_rules_and_thresholds(db, with_details):
    contacts = _scores(100, 90, 80, 70, 60, 50, 40, 30, 20, 10)
    top = _segment("top", TOP_20)
    hot = _segment("hot", {"field": "lead_score", "op": "gte", "value": 85})
    riser = contacts[-1]
    riser.lead_score = 95
    riser.save()

    with with_details():
        refresh_contacts([riser.pk])

    details = {c.segment_id: c.detail for c in MembershipChange.objects.filter(contact=riser)}
    assert details[top.pk]["conditions"][0]["text"] == "Lead score is in the top 20%: 95, threshold 90"
    assert details[hot.pk]["conditions"][0]["path"] == ""


def test_a_full_refresh_with_a_small_diff_records_details_and_a_large_one_does_not(db, monkeypatch, with_details):
    low = _scores(10, 20, 30)
    hot = _segment("hot", {"field": "lead_score", "op": "gte", "value": 50})
    Contact.objects.filter(pk=low[0].pk).update(lead_score=60)
    with with_details():
        refresh_segment(hot.pk)
    assert MembershipChange.objects.get(segment=hot, contact=low[0]).detail["result"] is True

    monkeypatch.setattr(history, "DETAIL_CAP", 1)
    Contact.objects.filter(pk__in=[low[1].pk, low[2].pk]).update(lead_score=70)
    with with_details():
        refresh_segment(hot.pk)

    assert list(MembershipChange.objects.filter(segment=hot, contact__in=low[1:]).values_list("detail", flat=True)) == [
        None,
        None,
    ]


def test_details_cost_the_same_queries_for_one_changed_contact_or_twenty(db, django_capture_on_commit_callbacks):
    # given a rule reading a property, an event and another segment, and contacts about to join
    now = timezone.now()
    _segment("base", {"field": "country", "op": "eq", "value": "US"})
    rule = {
        "all": [
            {"field": "lead_score", "op": "gte", "value": 50},
            {"event": {"kind": "email_click"}, "op": "performed", "within_days": 30},
            {"in_segment": "base"},
        ]
    }
    hot = _segment("hot", rule)
    batches = {1: ContactFactory.create_batch(1, lead_score=10, country="US"),
               20: ContactFactory.create_batch(20, lead_score=10, country="US")}  # fmt: skip
    for contact in [*batches[1], *batches[20]]:
        ActivityFactory(contact=contact, kind="email_click", occurred_at=now - timedelta(days=3))
    refresh_all()
    run_queued()  # the builds' own details
    queries = {}

    # when one contact, then twenty, cross the score, the segment is refreshed and its details described
    for size, contacts in batches.items():
        Contact.objects.filter(pk__in=[c.pk for c in contacts]).update(lead_score=80)
        with django_capture_on_commit_callbacks(execute=True):
            refresh_segment(hot.pk, now=now)
        with CaptureQueriesContext(connection) as captured:
            assert run_queued() == [size]
        queries[size] = len(captured.captured_queries)

    # then every join has its detail, and twenty cost no more queries than one
    details = MembershipChange.objects.filter(segment=hot, kind="join").values_list("detail", flat=True)
    assert len(details) == 21
    assert all(d["conditions"][1]["text"] == "Email click at least once in the last 30 days: 1 found" for d in details)
    assert queries[20] == queries[1]


def test_the_api_history_and_the_admin_show_why_a_contact_joined(db, with_details, api_client, ops_client):
    contact = ContactFactory(lead_score=20)
    _segment("hot", {"field": "lead_score", "op": "gte", "value": 50})
    contact.lead_score = 80
    contact.save()
    with with_details():
        refresh_contacts([contact.pk])

    rows = api_client("segments:read", "contacts:read").get("/api/v1/segments/hot/history/").json()["results"]
    admin_list = ops_client.get(reverse("admin:segments_membershipchange_changelist"))

    assert rows[0]["detail"]["conditions"][0]["text"] == "Lead score is at least 50: 80"
    assert "Lead score is at least 50: 80" in admin_list.text


def test_the_segment_page_lists_the_latest_changes_with_why(db, with_details, ops_client):
    contact = ContactFactory(lead_score=20, first_name="Rosa", last_name="Riser")
    hot = _segment("hot", {"field": "lead_score", "op": "gte", "value": 50})
    contact.lead_score = 80
    contact.save()
    with with_details():
        refresh_contacts([contact.pk])

    page = ops_client.get(reverse("segments-detail", args=[hot.pk])).text

    assert "Latest joins and leaves" in page
    assert "Rosa Riser" in page
    assert "Lead score is at least 50: 80" in page
