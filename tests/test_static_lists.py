"""Static lists and suppression lists from the contact list: "Add to static list…" and "Remove from
static list…" on selected contacts and on a whole filtered result (one statement, or a task with
progress when large), uploads of e-mails and ids, and static lists that never show a rule."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from activation.audience import audience
from activation.held_back import held_back
from contacts.models import Contact
from segments import static
from segments.models import ListEdit, ListEditContact, Membership, MembershipChange, Segment
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory, SegmentFactory
from tests.segments_support import run_queued

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:contacts_contact_changelist"


@pytest.fixture
def ops_client(client, ops_user):
    client.force_login(ops_user)
    return client


def members(segment: Segment) -> set[int]:
    return set(Membership.objects.filter(segment=segment).values_list("contact_id", flat=True))


def static_list(slug: str = "webinar", **fields) -> Segment:
    name, kind = fields.pop("name", slug.title()), fields.pop("kind", "static")
    return SegmentFactory(slug=slug, name=name, kind=kind, rule=None, **fields)


def post_action(client, action: str, *, filters: str = "", selected=(), across: bool = False, **choice):
    """The contact list's action as the admin posts it: first the action, then the list form."""
    url = reverse(CHANGELIST) + (f"?{filters}" if filters else "")
    data = {"action": action, "select_across": "1" if across else "0", "_selected_action": [str(pk) for pk in selected]}
    if choice:
        data |= {"apply": "yes", **{f"list-{key}": value for key, value in choice.items()}}
    return client.post(url, data)


def test_the_action_asks_which_list_and_counts_the_whole_filtered_result(ops_client):
    mqls = [ContactFactory(lifecycle_stage="mql") for _ in range(3)]
    ContactFactory(lifecycle_stage="lead")
    static_list("webinar")
    SegmentFactory(name="Hot leads")  # dynamic: not offered

    page = post_action(
        ops_client, "add_to_static_list", filters="lifecycle_stage__exact=mql", selected=[mqls[0].pk], across=True
    )

    assert page.status_code == 200
    assert "all 3 contacts matching the list's filters" in page.text
    assert "Webinar (static list, 0 members)" in page.text
    assert "Hot leads" not in page.text


def test_all_of_a_filtered_result_joins_a_static_list_recorded_as_manual_by_the_user(ops_client, ops_user):
    mqls = {ContactFactory(lifecycle_stage="mql").pk for _ in range(4)}
    ContactFactory(lifecycle_stage="lead")
    webinar = static_list("webinar")

    response = post_action(
        ops_client,
        "add_to_static_list",
        filters="lifecycle_stage__exact=mql",
        selected=[min(mqls)],
        across=True,
        segment=webinar.pk,
    )

    assert response.status_code == 302
    assert members(webinar) == mqls
    webinar.refresh_from_db()
    assert webinar.size == 4
    assert set(MembershipChange.objects.filter(segment=webinar).values_list("kind", "reason", "changed_by")) == {
        ("join", "manual", ops_user.pk)
    }


def test_selected_contacts_leave_a_list_and_others_stay(ops_client):
    people = [ContactFactory() for _ in range(3)]
    webinar = static_list("webinar")
    static.add_static_members(webinar, [p.pk for p in people])

    post_action(ops_client, "remove_from_static_list", selected=[people[0].pk, people[1].pk], segment=webinar.pk)

    assert members(webinar) == {people[2].pk}
    assert MembershipChange.objects.filter(segment=webinar, kind="leave").count() == 2


def test_a_new_list_is_made_for_the_selection(ops_client, ops_user):
    people = [ContactFactory() for _ in range(2)]

    post_action(
        ops_client,
        "add_to_static_list",
        selected=[p.pk for p in people],
        new_name="Legal hold 2026",
        new_kind="suppression_list",
    )

    made = Segment.objects.get(slug="legal-hold-2026")
    assert (made.kind, made.owner, made.rule) == ("suppression_list", ops_user, None)
    assert members(made) == {p.pk for p in people}


def test_a_rule_segment_is_refused_by_name_and_nothing_changes(ops_client):
    contact = ContactFactory()
    hot = SegmentFactory(name="Hot leads")

    page = post_action(ops_client, "add_to_static_list", selected=[contact.pk], segment=hot.pk)

    assert page.status_code == 200
    assert "Hot leads is a dynamic (rule) segment: its rule decides who is in it." in page.text
    assert not Membership.objects.exists()


def test_an_empty_result_is_refused_and_no_new_list_is_left_behind(ops_client):
    ContactFactory(lifecycle_stage="lead")

    page = post_action(
        ops_client,
        "add_to_static_list",
        filters="lifecycle_stage__exact=customer",
        selected=["1"],
        across=True,
        new_name="Customers",
        new_kind="static",
    )

    assert "No contacts are selected: nothing was changed." in [m.message for m in page.context["messages"]]
    assert not Segment.objects.filter(slug="customers").exists()


def statements(work) -> int:
    with CaptureQueriesContext(connection) as queries:
        work()
    return len(queries)


def test_adding_and_removing_a_filtered_result_takes_the_same_statements_whatever_its_size():
    small, large = static_list("small"), static_list("large")
    for _ in range(3):
        ContactFactory(lifecycle_stage="mql", country="DE")
    for _ in range(40):
        ContactFactory(lifecycle_stage="mql", country="FR")
    german = Contact.objects.filter(lifecycle_stage="mql", country="DE")
    everyone = Contact.objects.filter(lifecycle_stage="mql")

    add_small = statements(lambda: static.add_static_members(small, german))
    add_large = statements(lambda: static.add_static_members(large, everyone))
    remove_small = statements(lambda: static.remove_static_members(small, german))
    remove_large = statements(lambda: static.remove_static_members(large, everyone))

    assert (len(members(small)), len(members(large))) == (0, 0)
    assert MembershipChange.objects.filter(segment=large).count() == 86  # 43 joins, 43 leaves
    # PostgreSQL: the lock and one statement; SQLite: the lock, the history rows, the membership rows,
    # the size and the day's rollup (segments/membership.py); savepoints around them.
    limit = 5 if connection.vendor == "postgresql" else 10
    assert add_small == add_large <= limit
    assert remove_small == remove_large <= limit


def test_a_large_selection_goes_to_a_task_that_records_its_progress(
    ops_client, ops_user, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(static, "INLINE_MAX", 5)
    monkeypatch.setattr(static, "BATCH", 4)
    mqls = {ContactFactory(lifecycle_stage="mql").pk for _ in range(11)}
    already = static_list("webinar")
    static.add_static_members(already, [min(mqls)])

    with django_capture_on_commit_callbacks(execute=True):
        post_action(
            ops_client,
            "add_to_static_list",
            filters="lifecycle_stage__exact=mql",
            selected=[min(mqls)],
            across=True,
            segment=already.pk,
        )
    edit = ListEdit.objects.get()
    assert (edit.status, edit.total, edit.done, edit.requested_by) == ("queued", 11, 0, ops_user)
    assert edit.source == "Contacts admin: all matching lifecycle_stage__exact=mql"
    assert members(already) == {min(mqls)}  # nothing yet: the worker does it

    with CaptureQueriesContext(connection) as queries:
        run_queued("segments.tasks.list_edit_task")

    edit.refresh_from_db()
    assert (edit.status, edit.done, edit.added, edit.removed) == ("done", 11, 10, 0)
    assert members(already) == mqls
    assert not ListEditContact.objects.exists()
    # Three batches of at most four: a fixed number of statements per batch (the bound, the edit,
    # the progress; SQLite's edit is seven statements and two savepoints), none per contact.
    assert len(queries) <= 3 * 12 + 6
    assert "list-edits" in ops_client.get(reverse("admin:segments_segment_static_members", args=[already.pk])).text


def test_a_redelivered_list_edit_task_does_nothing(ops_user):
    webinar = static_list("webinar")
    ContactFactory()
    edit = static.start_list_edit(
        webinar, Contact.objects.all(), operation="add", user=ops_user, source="test selection"
    )
    static.run_list_edit(edit.pk)

    again = static.run_list_edit(edit.pk)

    assert "not queued" in again
    assert MembershipChange.objects.count() == 1


def test_a_failed_list_edit_is_retried_from_its_page_and_finishes_without_counting_twice(
    ops_client, ops_user, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(static, "BATCH", 4)
    webinar = static_list("webinar")
    ids = {ContactFactory().pk for _ in range(10)}
    edit = static.start_list_edit(webinar, Contact.objects.all(), operation="add", user=ops_user, source="test")
    real_add, calls = static.add_static_members, []

    def fails_on_the_second_batch(*args, **kwargs):  # a lost database connection, say
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("server closed the connection unexpectedly")
        return real_add(*args, **kwargs)

    monkeypatch.setattr(static, "add_static_members", fails_on_the_second_batch)
    with pytest.raises(ConnectionError):
        static.run_list_edit(edit.pk)
    edit.refresh_from_db()
    assert (edit.status, edit.done, edit.added) == ("failed", 4, 4)
    assert edit.error == "ConnectionError: server closed the connection unexpectedly"
    page = reverse("admin:segments_segment_static_members", args=[webinar.pk])
    assert f'name="retry" value="{edit.pk}"' in ops_client.get(page).text
    monkeypatch.setattr(static, "add_static_members", real_add)
    run_queued("segments.tasks.list_edit_task")  # the first delivery's task, gone from the queue

    with django_capture_on_commit_callbacks(execute=True):
        response = ops_client.post(page, {"retry": str(edit.pk)})
    assert response.status_code == 302
    edit.refresh_from_db()
    assert (edit.status, edit.error, edit.done) == ("queued", "", 0)
    run_queued("segments.tasks.list_edit_task")

    edit.refresh_from_db()
    assert (edit.status, edit.done, edit.added) == ("done", 10, 10)
    assert members(webinar) == ids
    assert MembershipChange.objects.filter(segment=webinar).count() == 10  # one join each, none twice
    assert 'name="retry"' not in ops_client.get(page).text
    # a finished change is not retried again; the admin says why
    with django_capture_on_commit_callbacks(execute=True):
        again = ops_client.post(page, {"retry": str(edit.pk)}, follow=True)
    assert "Only a failed change can be retried; this one is done." in again.text
    assert ListEdit.objects.get().status == "done"


def test_the_list_edits_admin_retries_the_selected_failed_edits(
    ops_client, ops_user, django_capture_on_commit_callbacks
):
    webinar = static_list("webinar")
    ContactFactory()
    failed = static.start_list_edit(webinar, Contact.objects.all(), operation="add", user=ops_user, source="a")
    ListEdit.objects.filter(pk=failed.pk).update(status="failed", error="OperationalError: gone")

    with django_capture_on_commit_callbacks(execute=True):
        response = ops_client.post(
            reverse("admin:segments_listedit_changelist"),
            {"action": "retry", "_selected_action": [str(failed.pk)]},
            follow=True,
        )

    assert "Retrying: add to the list Webinar (1 contact)." in response.text
    failed.refresh_from_db()
    assert (failed.status, failed.error) == ("queued", "")


def upload(client, segment: Segment, content: bytes, operation: str = "add"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = reverse("admin:segments_segment_static_members", args=[segment.pk])
    return client.post(url, {"operation": operation, "file": SimpleUploadedFile("list.csv", content, "text/csv")})


def test_an_uploaded_suppression_list_is_kept_out_of_exports_by_name(ops_client):
    opted_out, kept = ContactFactory(email="out@example.com"), ContactFactory(email="in@example.com")
    segment = static_list("prospects")
    static.add_static_members(segment, [opted_out.pk, kept.pk])
    opt_out = static_list("opt-out", kind="suppression_list", name="Opt-out list")
    activation = ActivationFactory(segment=segment, destination=DestinationFactory(kind="csv"))
    activation.suppression_segments.add(opt_out)

    response = upload(ops_client, opt_out, b"\xef\xbb\xbfEmail,Name\r\nOUT@example.com,Out\r\n\r\n")

    assert response.status_code == 302
    assert members(opt_out) == {opted_out.pk}
    assert list(audience(activation).values_list("pk", flat=True)) == [kept.pk]
    assert held_back(activation)[0] | {"count": 1} == {
        "cause": "suppression",
        "label": "Suppression list of this activation: Opt-out list",
        "segment_id": opt_out.pk,
        "count": 1,
    }


def test_a_global_suppression_list_applies_to_every_activation():
    contact = ContactFactory()
    segment = static_list("prospects")
    static.add_static_members(segment, [contact.pk])
    legal = static_list("legal-hold", kind="suppression_list", is_global=True)
    activation = ActivationFactory(segment=segment, destination=DestinationFactory(kind="csv"))

    static.add_static_members(legal, [contact.pk])

    assert not audience(activation).exists()


def test_malformed_upload_rows_are_named_by_number_and_nothing_changes(ops_client):
    ContactFactory(email="ok@example.com")
    opt_out = static_list("opt-out", kind="suppression_list")

    page = upload(ops_client, opt_out, b"email\nok@example.com\nnot-an-address\n\n12x\n")

    assert page.status_code == 200
    assert "2 row(s) are neither an e-mail address nor a contact id: row 3: not-an-address; row 5: 12x" in page.text
    assert not Membership.objects.exists()


def test_unknown_emails_in_an_upload_are_listed_back_and_nothing_changes(ops_client):
    ContactFactory(email="ok@example.com")
    opt_out = static_list("opt-out", kind="suppression_list")

    page = upload(ops_client, opt_out, b"ok@example.com\nghost@example.com\n")

    assert "No contact with these emails or ids: ghost@example.com. Nothing was changed." in page.text
    assert not Membership.objects.exists()


def test_a_static_list_form_and_page_show_members_never_a_rule(ops_client, ops_user):
    contact = ContactFactory(email="ada@example.com")
    webinar = static_list("webinar")
    rule_based = SegmentFactory(name="Hot leads")
    static.add_static_members(webinar, [contact.pk], user=ops_user)

    form = ops_client.get(reverse("admin:segments_segment_change", args=[webinar.pk])).text
    page = ops_client.get(reverse("segments-detail", args=[webinar.pk])).text
    rule_page = ops_client.get(reverse("segments-detail", args=[rule_based.pk])).text

    assert 'name="rule"' not in form
    assert 'id="id_rule"' not in form
    assert "ada@example.com" in form
    assert 'id="edit-members"' in form
    assert "Edit rule" not in page
    assert "Add or remove members" in page
    assert "ada@example.com" in page
    assert "(added or removed by hand by ops)" in page
    assert "Last change by hand" in page
    assert "Never refreshed" not in page
    assert "Edit rule" in rule_page


def test_the_contact_page_says_who_added_the_contact_by_hand(ops_client, ops_user):
    contact = ContactFactory()
    static.add_static_members(static_list("webinar"), [contact.pk], user=ops_user)

    page = ops_client.get(reverse("contacts-detail", args=[contact.pk])).text

    assert "Added by hand by ops" in page


def test_the_contact_search_adds_ticked_contacts_and_all_it_finds(ops_client):
    lovelaces = [ContactFactory(last_name="Lovelace", owner=None) for _ in range(3)]
    other = ContactFactory(last_name="Babbage")
    webinar = static_list("webinar")
    url = reverse("contacts-list-edit") + "?q=lovelace&owner=any"

    asked = ops_client.post(url, {"operation": "add", "scope": "all"})
    ops_client.post(
        url, {"operation": "add", "scope": "ticked", "contact": [other.pk], "apply": "yes", "list-segment": webinar.pk}
    )
    assert members(webinar) == {other.pk}
    done = ops_client.post(url, {"operation": "add", "scope": "all", "apply": "yes", "list-segment": webinar.pk})

    assert "All <strong>3</strong> contacts this search finds" in asked.text
    assert done.status_code == 302
    assert done["Location"].endswith("?q=lovelace&owner=any")
    assert members(webinar) == {other.pk, *(p.pk for p in lovelaces)}


def test_sales_reps_see_no_list_actions_and_cannot_post_them(client, sales_user):
    client.force_login(sales_user)
    ContactFactory(owner=sales_user)

    page = client.get(reverse("contacts-search"))
    refused = client.post(reverse("contacts-list-edit"), {"operation": "add", "scope": "all"})

    assert 'id="list-actions"' not in page.text
    assert refused.status_code == 403
