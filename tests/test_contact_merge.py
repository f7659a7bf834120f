"""Merging duplicate contacts and undoing the merge (contacts/merging.py, segments/merges.py)."""

from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from activation.exports import execute_run, start_run
from activation.models import ExportedMember, ExportRun, RunStatus
from contacts.erasure import erase_contacts
from contacts.merging import MergeRefused, merge_contacts, undo_merge
from contacts.models import (
    Activity,
    ActivityTally,
    Contact,
    ContactMerge,
    Deal,
    DuplicateCandidate,
    LifecycleChange,
    LifecycleStage,
)
from segments.explaining import explain_segment
from segments.history import describe_changes, detail_text
from segments.models import ChangeReason, Membership, MembershipChange, SegmentKind, SuppressionHold
from segments.refresh import refresh_segment
from segments.static import add_static_members, remove_static_members
from segments.targets import target_contacts
from tests.factories import (
    ActivationFactory,
    ActivityFactory,
    CompanyFactory,
    ContactFactory,
    DealFactory,
    DestinationFactory,
    PropertyDefinitionFactory,
    SegmentFactory,
    UserFactory,
)
from tests.segments_support import history, member_ids


@pytest.fixture
def pair(db):
    company = CompanyFactory(name="Acme", domain="acme.example")
    survivor = ContactFactory(
        email="ada.lovelace@acme.example", first_name="Ada", last_name="Lovelace", company=company, phone="",
        job_title="CTO", lead_score=10, interests=["cloud"], lifecycle_stage=LifecycleStage.LEAD,
    )  # fmt: skip
    loser = ContactFactory(
        email="ada@acme.example", first_name="Ada", last_name="Lovelace", phone="+14155550123", job_title="Chief",
        lead_score=40, interests=["ai", "cloud"], lifecycle_stage=LifecycleStage.MQL, do_not_contact=True,
        email_status="bounced",
    )  # fmt: skip
    ActivityFactory.create_batch(3, contact=loser)
    ActivityFactory(contact=survivor)
    DealFactory(contact=loser, name="Loser's deal")
    return survivor, loser


def _state() -> dict:
    """Everything a merge touches and an undo must put back, as comparable rows."""
    return {
        "contacts": list(Contact.objects.order_by("pk").values()),
        "activities": list(Activity.objects.order_by("pk").values()),
        "tallies": sorted(ActivityTally.objects.values_list("contact_id", "kind", "n")),
        "deals": list(Deal.objects.order_by("pk").values()),
        "lifecycle": list(LifecycleChange.objects.order_by("pk").values()),
        "memberships": sorted(Membership.objects.values_list("segment_id", "contact_id")),
        "candidates": list(DuplicateCandidate.objects.order_by("pk").values()),
    }


def test_it_keeps_the_survivor_with_chosen_values_and_moves_the_rows(pair):
    survivor, loser = pair
    user = UserFactory()

    merge = merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk, choices={"job_title": "loser"}, by=user)

    assert not Contact.objects.filter(pk=loser.pk).exists()
    kept = Contact.objects.get(pk=survivor.pk)
    assert kept.email == "ada.lovelace@acme.example"
    assert kept.job_title == "Chief"  # chosen
    assert kept.phone == "+14155550123"  # the survivor had none
    assert kept.lifecycle_stage == LifecycleStage.MQL  # the further stage
    assert kept.lead_score == 40
    assert kept.interests == ["cloud", "ai"]
    assert kept.do_not_contact is True  # consent: the more restrictive
    assert kept.email_status == "bounced"
    assert Activity.objects.filter(contact=kept).count() == 4
    assert Deal.objects.get(name="Loser's deal").contact_id == kept.pk
    assert sorted(ActivityTally.objects.filter(contact=kept).values_list("n", flat=True)) == [4]
    assert (merge.loser_email, merge.merged_by) == ("ada@acme.example", user)


def test_undo_puts_back_exactly_what_was_there(pair):
    survivor, loser = pair
    static = SegmentFactory(kind=SegmentKind.STATIC, rule=None)
    add_static_members(static, [loser.pk])
    DuplicateCandidate.objects.create(contact_a=survivor, contact_b=loser, score=0.9, evidence=["same phone"])
    before = _state()

    merge = merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)
    assert _state() != before
    undo_merge(merge.pk)

    assert _state() == before
    merge.refresh_from_db()
    assert merge.is_undone


def test_memberships_move_with_reason_merge_and_back_on_undo(pair):
    survivor, loser = pair
    static = SegmentFactory(kind=SegmentKind.STATIC, rule=None)
    both = SegmentFactory(kind=SegmentKind.STATIC, rule=None)
    add_static_members(static, [loser.pk])
    add_static_members(both, [loser.pk, survivor.pk])

    merge = merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)

    assert member_ids(static) == {survivor.pk}
    assert member_ids(both) == {survivor.pk}
    assert (survivor.pk, "join", ChangeReason.MERGE) in history(static)
    static.refresh_from_db()
    assert static.size == 1

    undo_merge(merge.pk)

    assert member_ids(static) == {loser.pk}
    assert member_ids(both) == {loser.pk, survivor.pk}
    assert set(history(static)[-2:]) == {(survivor.pk, "leave", "merge"), (loser.pk, "join", "merge")}


def test_a_suppressed_contact_never_leaves_its_suppression_through_a_merge(pair):
    survivor, loser = pair
    Contact.objects.filter(pk=loser.pk).update(lifecycle_stage=LifecycleStage.CUSTOMER)
    suppression = SegmentFactory(
        kind=SegmentKind.SUPPRESSION, rule={"field": "lifecycle_stage", "op": "eq", "value": "customer"}
    )
    refresh_segment(suppression.pk)
    assert member_ids(suppression) == {loser.pk}

    # the operator keeps the survivor's stage (lead), which the suppression's rule does not match
    merge = merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk, choices={"lifecycle_stage": "survivor"})
    refresh_segment(suppression.pk)

    assert Contact.objects.get(pk=survivor.pk).lifecycle_stage == LifecycleStage.LEAD
    assert member_ids(suppression) == {survivor.pk}
    assert SuppressionHold.objects.get().contact_id == survivor.pk

    undo_merge(merge.pk)
    refresh_segment(suppression.pk)

    assert member_ids(suppression) == {loser.pk}
    assert not SuppressionHold.objects.exists()


def test_the_explainer_agrees_with_the_refresh_about_a_held_survivor(pair, api_client, client, sales_user):
    """The refresh keeps a held survivor whose values no longer match the rule; every explanation
    of that membership (explainer, API, contact page, history detail) says it is held, and why."""
    survivor, loser = pair
    Contact.objects.filter(pk=loser.pk).update(lifecycle_stage=LifecycleStage.CUSTOMER)
    suppression = SegmentFactory(
        kind=SegmentKind.SUPPRESSION, rule={"field": "lifecycle_stage", "op": "eq", "value": "customer"}
    )
    other = SegmentFactory(rule={"field": "lifecycle_stage", "op": "eq", "value": "lead"})
    refresh_segment(suppression.pk)
    merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk, choices={"lifecycle_stage": "survivor"})
    refresh_segment(suppression.pk)
    refresh_segment(other.pk)
    contact = Contact.objects.get(pk=survivor.pk)
    now = timezone.now()
    held = f"Held by the merge of ada@acme.example (contact {loser.pk}) into this contact on"

    target = set(target_contacts(suppression, now=now).values_list("pk", flat=True))
    explained = explain_segment(suppression, contact, now=now)
    assert target == member_ids(suppression) == {survivor.pk}
    assert explained.result is True
    assert explained.root.result is False  # the rule alone says no: the hold decides
    assert explained.reasons()[0].startswith(held)
    assert explained.summary().startswith(f"Matches: {held}")
    # a segment that is not a suppression is explained by its rule alone, without reading holds
    with CaptureQueriesContext(connection) as queries:
        assert explain_segment(other, contact, now=now).held == []
    assert not any("suppressionhold" in query["sql"] for query in queries)

    body = api_client("segments:read", "contacts:read").get(f"/api/v1/contacts/{survivor.pk}/segments/?explain=1")
    explanations = {item["slug"]: item["explanation"] for item in body.json()}
    assert explanations[suppression.slug]["result"] is True
    assert explanations[suppression.slug]["held"][0].startswith(held)
    assert explanations[other.slug]["held"] == []

    client.force_login(sales_user)
    page = client.get(reverse("contacts-detail", args=[survivor.pk]))
    why = {m.segment_id: m.why for m in page.context["memberships"]}
    assert why[suppression.pk][0].startswith(held)
    assert held in page.content.decode()

    # the merge's history row gets the hold as its detail (the rule alone would contradict the join)
    joined = MembershipChange.objects.get(segment=suppression, contact_id=survivor.pk, reason=ChangeReason.MERGE)
    assert describe_changes([suppression.pk], changed_at=joined.changed_at, now=now) == 1
    joined.refresh_from_db()
    assert joined.detail["result"] is True
    assert detail_text(joined.detail).startswith(held)


def test_custom_properties_are_chosen_key_by_key(db):
    PropertyDefinitionFactory(key="plan", type="text")
    PropertyDefinitionFactory(key="seats", type="number")
    survivor = ContactFactory(properties={"plan": "pro"})
    loser = ContactFactory(properties={"plan": "basic", "seats": 12})

    merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk, choices={"props.plan": "loser"})

    assert Contact.objects.get(pk=survivor.pk).properties == {"plan": "basic", "seats": 12}


def test_the_earlier_first_seen_date_and_customer_since_survive(db):
    survivor = ContactFactory()
    loser = ContactFactory(customer_since=date(2020, 5, 1))
    Contact.objects.filter(pk=loser.pk).update(created_at=timezone.now() - timedelta(days=400))

    merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)

    kept = Contact.objects.get(pk=survivor.pk)
    assert kept.customer_since == date(2020, 5, 1)
    assert kept.created_at < timezone.now() - timedelta(days=399)


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ({"shoe_size": "loser"}, "choices.shoe_size: not a field either contact can give."),
        ({"job_title": "mine"}, "choices.job_title: 'mine' is not one of survivor, loser."),
        ({"do_not_contact": "survivor"}, "choices.do_not_contact: not a field either contact can give (it is"),
        ("loser", 'choices: expected an object of field: "survivor" or "loser".'),
    ],
)
def test_bad_choices_are_refused_by_name_and_nothing_changes(pair, choices, message):
    survivor, loser = pair
    before = _state()

    with pytest.raises(MergeRefused) as refused:
        merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk, choices=choices)

    assert str(refused.value).startswith(message)
    assert _state() == before
    assert not ContactMerge.objects.exists()


def test_a_contact_is_not_merged_into_itself_nor_into_nobody(pair):
    survivor, _loser = pair

    with pytest.raises(MergeRefused, match=f"Contact {survivor.pk} cannot be merged into itself"):
        merge_contacts(survivor_id=survivor.pk, loser_id=survivor.pk)
    with pytest.raises(MergeRefused, match="Contact 999999 does not exist"):
        merge_contacts(survivor_id=survivor.pk, loser_id=999999)


def test_a_merge_waits_for_a_running_export_of_their_segment(pair):
    survivor, loser = pair
    segment = SegmentFactory(kind=SegmentKind.STATIC, rule=None, name="Newsletter")
    add_static_members(segment, [loser.pk])
    run = ExportRun.objects.create(activation=ActivationFactory(segment=segment), status=RunStatus.RUNNING, mode="full")

    with pytest.raises(MergeRefused, match=f"Export run {run.pk} of 'Newsletter' is running"):
        merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)

    run.status = RunStatus.SUCCEEDED
    run.save()
    merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)


def _exported_to(media, segment):
    """A delta CSV activation of `segment` and a function running it: (added, removed) e-mails of each run."""
    activation = ActivationFactory(segment=segment, mode="delta", destination=DestinationFactory(csv_columns=["email"]))

    def run() -> tuple[list[str], list[str]]:
        done = execute_run(start_run(activation).pk)
        assert done.status == "succeeded", done.error
        lines = [
            (media / name).read_text().splitlines()[1:] if name else []
            for name in (done.file_path, done.removed_file_path)
        ]
        return lines[0], lines[1]

    return activation, run


def test_a_merged_away_contact_the_destination_has_passes_to_the_survivor(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    survivor, loser = ContactFactory(email="ada.lovelace@acme.example"), ContactFactory(email="ada@acme.example")
    segment = SegmentFactory(kind=SegmentKind.STATIC, rule=None, name="Newsletter")
    add_static_members(segment, [loser.pk])
    activation, run = _exported_to(tmp_path, segment)
    assert run() == (["ada@acme.example"], [])

    merge = merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)

    # the destination has the person (as ada@acme.example): no removal of the loser, no add of the survivor
    assert member_ids(segment) == {survivor.pk}
    assert run() == ([], [])
    assert list(ExportedMember.objects.values_list("contact_id", "removal")) == [(survivor.pk, ["ada@acme.example"])]

    # undone, the destination's row is the loser's again, and nothing needs sending either
    undo_merge(merge.pk)
    assert ExportedMember.objects.values_list("contact_id", flat=True).get() == loser.pk
    assert run() == ([], [])
    # and when the survivor leaves after a merge, the destination is sent what it was given
    merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)
    remove_static_members(segment, [survivor.pk])
    assert run() == ([], ["ada@acme.example"])
    assert not ExportedMember.objects.filter(activation=activation).exists()


def test_when_the_destination_has_both_only_the_duplicate_is_removed(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    survivor, loser = ContactFactory(email="ada.lovelace@acme.example"), ContactFactory(email="ada@acme.example")
    segment = SegmentFactory(kind=SegmentKind.STATIC, rule=None, name="Newsletter")
    add_static_members(segment, [survivor.pk, loser.pk])
    _activation, run = _exported_to(tmp_path, segment)
    assert sorted(run()[0]) == ["ada.lovelace@acme.example", "ada@acme.example"]

    merge = merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)

    assert merge.participants["activation"] == {"rows": []}
    assert run() == ([], ["ada@acme.example"])
    assert ExportedMember.objects.values_list("contact_id", flat=True).get() == survivor.pk


def test_undo_leaves_a_snapshot_row_a_full_run_rewrote_with_the_survivor(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    survivor, loser = ContactFactory(email="ada.lovelace@acme.example"), ContactFactory(email="ada@acme.example")
    segment = SegmentFactory(kind=SegmentKind.STATIC, rule=None, name="Newsletter")
    add_static_members(segment, [loser.pk])
    activation, run = _exported_to(tmp_path, segment)
    run()
    merge = merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)
    activation.mode = "full"
    activation.save()
    assert run()[0] == ["ada.lovelace@acme.example"]  # a full run sends the survivor as it is now

    undo_merge(merge.pk)

    # the destination's row holds the survivor's identifiers now: it stays the survivor's
    assert ExportedMember.objects.values_list("contact_id", "removal").get() == (
        survivor.pk,
        ["ada.lovelace@acme.example"],
    )


def test_undo_is_refused_twice_and_before_a_later_merge_is_undone(pair):
    survivor, loser = pair
    third = ContactFactory()
    first = merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)
    second = merge_contacts(survivor_id=third.pk, loser_id=survivor.pk)

    with pytest.raises(MergeRefused, match=f"took part in a later merge \\({second.pk}\\); undo that one first"):
        undo_merge(first.pk)

    undo_merge(second.pk)
    undo_merge(first.pk)
    with pytest.raises(MergeRefused, match=f"Merge {first.pk} was already undone"):
        undo_merge(first.pk)
    assert Contact.objects.filter(pk__in=[survivor.pk, loser.pk, third.pk]).count() == 3


def test_undo_is_refused_when_the_e_mail_was_taken_again(pair):
    survivor, loser = pair
    merge = merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)
    ContactFactory(email="ada@acme.example")

    with pytest.raises(MergeRefused, match=r"e-mail ada@acme\.example exists again"):
        undo_merge(merge.pk)


def _merge_queries(activities: int, segments: int) -> int:
    survivor, loser = ContactFactory(), ContactFactory()
    ActivityFactory.create_batch(activities, contact=loser)
    DealFactory.create_batch(activities, contact=loser)
    for _ in range(segments):
        add_static_members(SegmentFactory(kind=SegmentKind.STATIC, rule=None), [loser.pk])
    with CaptureQueriesContext(connection) as merged:
        merge = merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)
    with CaptureQueriesContext(connection) as undone:
        undo_merge(merge.pk)
    return len(merged), len(undone)


def test_merge_and_undo_cost_the_same_few_queries_however_many_rows_move(db):
    _merge_queries(activities=1, segments=2)  # fills the per-process caches (compiled targets, content types)
    small = _merge_queries(activities=1, segments=2)
    large = _merge_queries(activities=30, segments=2)

    assert small == large
    # 75 on SQLite: the catch-up's pending changes (issue 23) and the activation participant's read of the
    # snapshot rows to pass on (issue 20) came after the bound of 70; 78 with the aliases (the loser's
    # moved, the address given up kept, the loser's delete reaching its alias table)
    assert max(small) <= 78
    if connection.vendor == "postgresql":  # one membership statement for every segment
        assert _merge_queries(activities=1, segments=6) == small


def test_the_api_merges_and_undoes(api_client, pair):
    survivor, loser = pair
    client = api_client("contacts:write")

    response = client.post(
        f"/api/v1/contacts/{survivor.pk}/merge/", {"loser": loser.pk, "choices": {"job_title": "loser"}}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["survivor_id"], body["loser_id"], body["choices"]["job_title"]) == (survivor.pk, loser.pk, "loser")
    assert Contact.objects.get(pk=survivor.pk).job_title == "Chief"
    undone = client.post(f"/api/v1/merges/{body['id']}/undo/")
    assert undone.status_code == 200
    assert undone.json()["undone_at"] is not None
    assert Contact.objects.filter(pk=loser.pk).exists()
    again = client.post(f"/api/v1/merges/{body['id']}/undo/")
    assert again.status_code == 409
    assert "already undone" in again.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"loser": "x"}, 400, "Expected a whole number, got str."),
        ({"loser": 999999}, 404, "No contact with id 999999."),
        ({}, 400, "This field is required."),
        ({"loser": None, "choices": {}}, 400, "This field may not be null."),
        ({"loser": 1, "choices": {}, "keep": "both"}, 400, "Unknown field"),
    ],
)
def test_the_api_refuses_bad_merges_saying_why(api_client, pair, body, status, says):
    survivor, _loser = pair

    response = api_client("contacts:write").post(f"/api/v1/contacts/{survivor.pk}/merge/", body, format="json")

    assert response.status_code == status
    assert says in response.content.decode()


@pytest.mark.parametrize(
    ("choices", "field", "message"),
    [
        ({"shoe_size": "loser"}, "choices.shoe_size", "choices.shoe_size: not a field either contact can give."),
        ({"props.nope": "loser"}, "choices.props.nope", "choices.props.nope: not a field either contact can give."),
        ({"job_title": "both"}, "choices.job_title", "choices.job_title: 'both' is not one of survivor, loser."),
    ],
)
def test_the_api_answers_400_naming_a_choice_the_merge_cannot_make(api_client, pair, choices, field, message):
    survivor, loser = pair
    before = _state()

    response = api_client("contacts:write").post(
        f"/api/v1/contacts/{survivor.pk}/merge/", {"loser": loser.pk, "choices": choices}, format="json"
    )

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["field"], error["message"]) == ("invalid", field, message)
    assert _state() == before
    assert not ContactMerge.objects.exists()


def test_the_api_refuses_merging_into_itself_an_unknown_contact_and_without_the_scope(api_client, pair):
    survivor, loser = pair
    client = api_client("contacts:write")

    itself = client.post(f"/api/v1/contacts/{survivor.pk}/merge/", {"loser": survivor.pk}, format="json")
    assert itself.status_code == 409
    assert "cannot be merged into itself" in itself.json()["error"]["message"]
    assert client.post("/api/v1/contacts/999999/merge/", {"loser": loser.pk}, format="json").status_code == 404
    assert client.post("/api/v1/merges/999999/undo/").status_code == 404
    read_only = api_client("contacts:read").post(f"/api/v1/contacts/{survivor.pk}/merge/", {"loser": loser.pk})
    assert read_only.status_code == 403


def test_erasing_the_survivor_erases_the_merged_away_record_kept_for_undo(pair):
    survivor, loser = pair
    merge_contacts(survivor_id=survivor.pk, loser_id=loser.pk)

    erase_contacts([survivor.pk])

    assert not ContactMerge.objects.exists()
    assert not Contact.objects.filter(email__in=["ada@acme.example", "ada.lovelace@acme.example"]).exists()
