"""Finding duplicate contacts (contacts/duplicates.py): planted duplicates are found with their
evidence, unrelated look-alikes are not, and a reviewed pair stays reviewed."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.duplicates import MAX_BLOCK, find_duplicates, name_similarity
from contacts.models import DuplicateCandidate, DuplicateStatus
from tests.factories import CompanyFactory, ContactFactory


def _pairs() -> dict[frozenset, DuplicateCandidate]:
    return {frozenset((c.contact_a_id, c.contact_b_id)): c for c in DuplicateCandidate.objects.all()}


@pytest.fixture
def planted(db):
    acme = CompanyFactory(name="Acme", domain="acme.example")
    people = {
        "plus": ContactFactory(email="grace.hopper+news@gmail.com", first_name="Grace", last_name="Hopper"),
        "dots": ContactFactory(email="gracehopper@gmail.com", first_name="Grace", last_name="Hopper"),
        "jon": ContactFactory(email="jon.smith@acme.example", first_name="Jon", last_name="Smith", company=acme),
        "john": ContactFactory(email="js@acme.example", first_name="John", last_name="Smith", company=acme),
        "phone_a": ContactFactory(email="li.wei@one.example", first_name="Li", last_name="Wei", phone="+4930123456"),
        "phone_b": ContactFactory(email="wei.li@two.example", first_name="Li", last_name="Wei", phone="+4930123456"),
        "meier": ContactFactory(email="k.meier@beta.example", first_name="Karl", last_name="Meier"),
        "meyer": ContactFactory(email="karl@beta.example", first_name="Karl", last_name="Meyer"),
        # look-alikes that are other people
        "jane": ContactFactory(email="jane.smith@acme.example", first_name="Jane", last_name="Smith", company=acme),
        "switchboard": ContactFactory(
            email="ops@three.example", first_name="Olu", last_name="Adeyemi", phone="+4930123456"
        ),
        "other_gmail": ContactFactory(email="grace.kelly@gmail.com", first_name="Grace", last_name="Kelly"),
        "namesake": ContactFactory(email="john.smith@other.example", first_name="John", last_name="Smith"),
    }
    return {name: contact.pk for name, contact in people.items()}


def test_it_finds_the_planted_duplicates_with_their_evidence(planted):
    found = find_duplicates()

    pairs = _pairs()
    expected = {
        ("plus", "dots"): "same mailbox (+tag or dots)",
        ("jon", "john"): "same company and last name",
        ("phone_a", "phone_b"): "same phone",
        ("meier", "meyer"): "same e-mail domain and first name",
    }
    for (a, b), evidence in expected.items():
        pair = pairs[frozenset((planted[a], planted[b]))]
        assert evidence in pair.evidence
        assert 0.75 <= pair.score <= 1
    assert len(pairs) == len(expected) == found.pairs
    assert found.new == 4


def test_unrelated_look_alikes_are_not_paired(planted):
    find_duplicates()

    pairs = _pairs()
    for a, b in [("jane", "john"), ("jane", "jon"), ("switchboard", "phone_a"), ("other_gmail", "plus"),
                 ("namesake", "john")]:  # fmt: skip
        assert frozenset((planted[a], planted[b])) not in pairs, (a, b)


def test_a_dismissed_pair_stays_dismissed_and_a_pair_no_longer_found_goes(planted):
    find_duplicates()
    pairs = _pairs()
    dismissed = pairs[frozenset((planted["jon"], planted["john"]))]
    dismissed.status = DuplicateStatus.DISMISSED
    dismissed.save()
    ContactFactory._meta.model.objects.filter(pk=planted["phone_b"]).update(phone="+4930999999")

    found = find_duplicates()

    pairs = _pairs()
    assert pairs[frozenset((planted["jon"], planted["john"]))].status == DuplicateStatus.DISMISSED
    assert frozenset((planted["phone_a"], planted["phone_b"])) not in pairs
    assert (found.removed, found.new) == (1, 0)


def test_a_block_too_large_is_counted_not_compared(db):
    company = CompanyFactory()
    for n in range(MAX_BLOCK + 1):
        ContactFactory(email=f"p{n}@big.example", first_name="Sam", last_name=f"Lee{n}", company=company)

    found = find_duplicates()

    assert found.skipped_blocks >= 1
    assert found.pairs == 0


def test_the_search_is_one_statement_per_block_kind_whatever_the_number_of_contacts(planted):
    find_duplicates()
    with CaptureQueriesContext(connection) as small:
        find_duplicates()
    for n in range(30):
        ContactFactory(email=f"twin{n}@x{n}.example", first_name="Twin", last_name="Number", phone=f"+44207000{n:04d}")
    with CaptureQueriesContext(connection) as large:
        find_duplicates()

    reads = [q for q in large.captured_queries if "contacts_contact" in q["sql"] and "WHERE" in q["sql"]]
    assert len(reads) <= 6
    assert len(large.captured_queries) == len(small.captured_queries)


@pytest.mark.parametrize(
    ("a", "b", "alike"),
    [("jon", "john", True), ("meier", "meyer", True), ("john", "jane", False), ("person1", "person2", False)],
)
def test_name_similarity(a, b, alike):
    assert (name_similarity(a, b) >= 0.88) is alike
