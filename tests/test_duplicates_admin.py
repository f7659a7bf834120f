"""The duplicate review queue, the merge page and undo in the admin (contacts/duplicate_admin.py)."""

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from activation.models import ExportRun, RunStatus
from contacts.models import Activity, Contact, ContactMerge, DuplicateCandidate, DuplicateStatus
from segments.static import add_static_members
from tests.factories import ActivationFactory, ActivityFactory, ContactFactory, SegmentFactory


@pytest.fixture
def pair(db):
    first = ContactFactory(email="grace@navy.example", first_name="Grace", last_name="Hopper", job_title="")
    second = ContactFactory(email="g.hopper@navy.example", first_name="Grace", last_name="Hopper",
                            job_title="Rear Admiral", phone="+12025550100")  # fmt: skip
    ActivityFactory(contact=second)
    return DuplicateCandidate.objects.create(
        contact_a=first, contact_b=second, score=0.93, evidence=["same e-mail domain and last name"]
    )


@pytest.fixture
def ops(client, ops_user):
    client.force_login(ops_user)
    return client


def _review(pair) -> str:
    return reverse("admin:contacts_duplicatecandidate_review", args=[pair.pk])


def test_the_queue_lists_pending_pairs_with_evidence_and_a_review_link(ops, pair):
    response = ops.get(reverse("admin:contacts_duplicatecandidate_changelist"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "same e-mail domain and last name" in page
    assert _review(pair) in page
    assert "Find duplicates now" in page


def test_the_review_page_shows_both_values_and_the_default_choice(ops, pair):
    response = ops.get(_review(pair))

    page = response.content.decode()
    assert "Rear Admiral" in page
    assert "+12025550100" in page
    # the first has no job title: the second's is chosen
    assert response.context["form"]["field:job_title"].initial == "b"
    assert response.context["form"]["field:first_name"].initial == "a"


def test_merging_from_the_page_keeps_the_chosen_contact_and_values(ops, pair, ops_user):
    first, second = pair.contact_a, pair.contact_b
    form = ops.get(_review(pair)).context["form"]
    data = {name: field.initial for name, field in form.fields.items()}
    data.update({"keep": "b", "field:email": "b", "field:job_title": "b", "merge": "Merge"})

    response = ops.post(_review(pair), data)

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:contacts_contact_change", args=[second.pk])
    assert not Contact.objects.filter(pk=first.pk).exists()
    assert Contact.objects.get(pk=second.pk).job_title == "Rear Admiral"
    merge = ContactMerge.objects.get()
    assert (merge.survivor_id, merge.loser_id, merge.merged_by) == (second.pk, first.pk, ops_user)
    assert not DuplicateCandidate.objects.exists()  # it went with the merged-away contact


def test_a_refused_merge_says_why_on_the_page(ops, pair):
    segment = SegmentFactory(kind="static", rule=None, name="Weekly digest")
    add_static_members(segment, [pair.contact_a_id])
    ExportRun.objects.create(activation=ActivationFactory(segment=segment), status=RunStatus.RUNNING, mode="full")
    form = ops.get(_review(pair)).context["form"]
    data = {name: field.initial for name, field in form.fields.items()} | {"merge": "Merge"}

    response = ops.post(_review(pair), data)

    assert response.status_code == 200
    assert "of &#x27;Weekly digest&#x27; is running" in response.content.decode()
    assert Contact.objects.count() == 2


def test_dismissing_from_the_page_marks_the_pair(ops, pair, ops_user):
    response = ops.post(_review(pair), {"dismiss": "Not duplicates"})

    assert response.status_code == 302
    pair.refresh_from_db()
    assert (pair.status, pair.reviewed_by) == (DuplicateStatus.DISMISSED, ops_user)


def test_undo_from_the_merge_page_brings_the_contact_back(ops, pair):
    first, second = pair.contact_a, pair.contact_b
    form = ops.get(_review(pair)).context["form"]
    ops.post(_review(pair), {name: field.initial for name, field in form.fields.items()} | {"merge": "Merge"})
    merge = ContactMerge.objects.get()
    page = reverse("admin:contacts_contactmerge_change", args=[merge.pk])
    assert "Undo this merge" in ops.get(page).content.decode()

    response = ops.post(page, {"undo": "1"}, follow=True)

    assert f"Merge {merge.pk} undone" in response.content.decode()
    assert Contact.objects.filter(pk__in=[first.pk, second.pk]).count() == 2
    assert Activity.objects.get().contact_id == second.pk
    assert DuplicateCandidate.objects.get().status == DuplicateStatus.PENDING
    assert "Undo this merge" not in ops.get(page).content.decode()
    again = ops.post(page, {"undo": "1"}, follow=True)
    assert "was already undone" in again.content.decode()


def test_find_duplicates_queues_the_search(ops, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(reverse("admin:contacts_duplicatecandidate_find"))

    assert response.status_code == 302
    assert [task.func() for task in OrmQ.objects.all()] == ["contacts.tasks.find_duplicates"]


def test_sales_cannot_open_the_review_page(client, sales_user, pair):
    client.force_login(sales_user)

    assert client.get(_review(pair)).status_code in (302, 403)
