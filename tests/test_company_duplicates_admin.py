"""The duplicate company queue, the merge page and undo in the admin (contacts/company_duplicate_admin.py)."""

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from contacts.models import Company, CompanyDuplicateCandidate, CompanyMerge, Contact, DuplicateStatus
from tests.factories import CompanyFactory, ContactFactory


@pytest.fixture
def pair(db):
    first = CompanyFactory(name="Acme Ltd", domain="acme.co.uk", industry="")
    second = CompanyFactory(name="Acme Shop", domain="shop.acme.co.uk", industry="retail", employee_count=250)
    ContactFactory(company=second, email="buyer@shop.acme.co.uk")
    return CompanyDuplicateCandidate.objects.create(
        company_a=first, company_b=second, score=0.94, evidence=["same registrable domain"]
    )


@pytest.fixture
def ops(client, ops_user):
    client.force_login(ops_user)
    return client


def _review(pair) -> str:
    return reverse("admin:contacts_companyduplicatecandidate_review", args=[pair.pk])


def _form_data(ops, pair, **changes) -> dict:
    form = ops.get(_review(pair)).context["form"]
    return {name: field.initial for name, field in form.fields.items()} | {"merge": "Merge"} | changes


def test_the_queue_lists_pending_pairs_with_evidence_and_a_review_link(ops, pair):
    response = ops.get(reverse("admin:contacts_companyduplicatecandidate_changelist"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "same registrable domain" in page
    assert _review(pair) in page
    assert "Find duplicate companies now" in page


def test_the_review_page_shows_both_values_and_the_default_choice(ops, pair):
    response = ops.get(_review(pair))

    page = response.content.decode()
    assert "retail" in page
    assert "shop.acme.co.uk" in page
    assert response.context["form"]["field:industry"].initial == "b"  # the first has none
    assert response.context["form"]["field:name"].initial == "a"


def test_merging_from_the_page_keeps_the_chosen_company_and_values(ops, pair, ops_user):
    first, second = pair.company_a, pair.company_b

    response = ops.post(_review(pair), _form_data(ops, pair, keep="b"))

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:contacts_company_change", args=[second.pk])
    kept = Company.objects.get()
    # each row's choice is by column: the first's name and domain (the defaults), the second's industry
    assert (kept.pk, kept.name, kept.domain, kept.industry) == (second.pk, "Acme Ltd", "acme.co.uk", "retail")
    merge = CompanyMerge.objects.get()
    assert (merge.survivor_id, merge.loser_id, merge.merged_by) == (second.pk, first.pk, ops_user)
    assert not CompanyDuplicateCandidate.objects.exists()


def test_a_page_left_open_while_a_company_changed_merges_nothing(ops, pair):
    data = _form_data(ops, pair)
    company = Company.objects.get(pk=pair.company_b_id)
    company.industry = "wholesale"
    company.save()

    response = ops.post(_review(pair), data)

    assert response.status_code == 200
    assert "changed since this page was shown" in response.content.decode()
    assert "wholesale" in response.content.decode()  # drawn again with the current values
    assert Company.objects.count() == 2


def test_a_pair_merged_meanwhile_sends_back_to_the_queue_saying_why(ops, pair):
    data = _form_data(ops, pair)
    ops.post(_review(pair), data)  # merged in another tab

    response = ops.post(_review(pair), data, follow=True)

    assert f"Pair {pair.pk} is no longer in the queue" in response.content.decode()
    assert CompanyMerge.objects.count() == 1


def test_dismissing_from_the_page_marks_the_pair(ops, pair, ops_user):
    response = ops.post(_review(pair), {"dismiss": "Not duplicates"})

    assert response.status_code == 302
    pair.refresh_from_db()
    assert (pair.status, pair.reviewed_by) == (DuplicateStatus.DISMISSED, ops_user)


def test_undo_from_the_merge_page_brings_the_company_back(ops, pair):
    first, second = pair.company_a, pair.company_b
    ops.post(_review(pair), _form_data(ops, pair))
    assert Contact.objects.get().company_id == first.pk
    merge = CompanyMerge.objects.get()
    page = reverse("admin:contacts_companymerge_change", args=[merge.pk])
    assert "Undo this merge" in ops.get(page).content.decode()

    response = ops.post(page, {"undo": "1"}, follow=True)

    assert f"Company merge {merge.pk} undone: Acme Shop is back" in response.content.decode()
    assert Contact.objects.get().company_id == second.pk
    assert CompanyDuplicateCandidate.objects.get().status == DuplicateStatus.PENDING
    assert "Undo this merge" not in ops.get(page).content.decode()
    again = ops.post(page, {"undo": "1"}, follow=True)
    assert "was already undone" in again.content.decode()


def test_find_duplicate_companies_queues_the_search(ops, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(reverse("admin:contacts_companyduplicatecandidate_find"))

    assert response.status_code == 302
    assert [task.func() for task in OrmQ.objects.all()] == ["contacts.tasks.find_company_duplicates"]


def test_sales_cannot_open_the_review_page(client, sales_user, pair):
    client.force_login(sales_user)

    assert client.get(_review(pair)).status_code in (302, 403)
