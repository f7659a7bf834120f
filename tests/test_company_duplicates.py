"""Finding duplicate companies (contacts/company_duplicates.py): planted duplicates are found with
their evidence and score, look-alikes that are other companies are not, keys follow every write,
and the search's statements do not grow with the number of companies."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.company_duplicates import (
    MAX_BLOCK,
    find_company_duplicates,
    name_key,
    name_similarity,
    registrable_domain,
)
from contacts.models import Company, CompanyDuplicateCandidate, CompanyMatchKey, DuplicateStatus
from tests.factories import CompanyFactory


def _pairs() -> dict[frozenset, CompanyDuplicateCandidate]:
    return {frozenset((c.company_a_id, c.company_b_id)): c for c in CompanyDuplicateCandidate.objects.all()}


@pytest.fixture
def planted(db):
    companies = {
        "shop": ("Acme Shop", "shop.acme.co.uk"),
        "acme_uk": ("Acme Ltd", "acme.co.uk"),
        "acme_com": ("ACME, Inc.", "acme.com"),
        "acme_de": ("Acme GmbH & Co. KG", "acme.de"),
        "initech": ("Initech Solutions LLC", "initech.example"),
        "initec": ("Initec Solutions", "initec-solutions.example"),
        # look-alikes that are other companies
        "widgets": ("Acme Widgets", "acmewidgets.example"),
        "globex_1": ("Globex 1", "globex1.example"),
        "globex_2": ("Globex 2", "globex2.example"),
        "blog_a": ("Ada's blog", "ada.github.io"),
        "blog_b": ("Bob's blog", "bob.github.io"),
        "hooli": ("Hooli", "hooli.com"),
        "hooly": ("Hooly Cafe", "hooli.cafe"),
    }
    return {key: CompanyFactory(name=name, domain=domain).pk for key, (name, domain) in companies.items()}


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("ACME GmbH & Co. KG", "acme"),
        ("Acmé S.A.", "acme"),
        ("The Acme Company", "acme"),
        ("Initech S.p.A.", "initech"),
        ("Globex B.V.", "globex"),
        ("Procter & Gamble", "procter and gamble"),
        ("Company Inc", "company inc"),  # nothing but legal forms: kept
        ("Amazon.com, Inc.", "amazon com"),
    ],
)
def test_name_key_drops_case_accents_punctuation_and_legal_forms(name, key):
    assert name_key(name) == key


@pytest.mark.parametrize(
    ("domain", "registrable"),
    [
        ("shop.acme.co.uk", ("acme.co.uk", "acme")),
        ("acme.com", ("acme.com", "acme")),
        ("eu.shop.acme.com", ("acme.com", "acme")),
        ("ada.github.io", ("ada.github.io", "ada")),  # github.io is a suffix: Ada's and Bob's sites differ
        ("localhost", ("localhost", "")),
    ],
)
def test_registrable_domain_follows_the_public_suffix_list(domain, registrable):
    assert registrable_domain(domain) == registrable


def test_it_finds_the_planted_duplicates_with_their_evidence(planted):
    found = find_company_duplicates()

    pairs = _pairs()
    expected = {
        ("shop", "acme_uk"): "same registrable domain",
        ("acme_uk", "acme_com"): "same domain name under another suffix",
        ("acme_com", "acme_de"): "same name (legal form aside)",
        ("initech", "initec"): "similar name",
    }
    for (a, b), evidence in expected.items():
        pair = pairs[frozenset((planted[a], planted[b]))]
        assert evidence in pair.evidence, (a, b, pair.evidence)
        assert 0.75 <= pair.score <= 1
    acme = pairs[frozenset((planted["acme_uk"], planted["acme_com"]))]
    assert acme.evidence == ["same domain name under another suffix", "same name (legal form aside)"]
    assert acme.score == 1.0  # 0.95 for the domain name, 0.05 for the second piece of evidence
    assert found.keys_computed == Company.objects.count()
    assert found.pairs == len(pairs) == found.new


def test_unrelated_look_alikes_are_not_paired(planted):
    find_company_duplicates()

    pairs = _pairs()
    for a, b in [("widgets", "acme_com"), ("widgets", "shop"), ("globex_1", "globex_2"), ("blog_a", "blog_b"),
                 ("hooli", "hooly")]:  # fmt: skip
        assert frozenset((planted[a], planted[b])) not in pairs, (a, b)


def test_keys_follow_a_change_made_by_any_write_and_stale_pairs_go(planted):
    find_company_duplicates()
    pairs = _pairs()
    dismissed = pairs[frozenset((planted["acme_com"], planted["acme_de"]))]
    dismissed.status = DuplicateStatus.DISMISSED
    dismissed.save()
    # an UPDATE that no save() sees: the search still notices the new name
    Company.objects.filter(pk=planted["initec"]).update(name="Umbrella")
    Company.objects.filter(pk=planted["globex_2"]).update(name="Hooli Holdings", domain="hooli.net")

    found = find_company_duplicates()

    pairs = _pairs()
    assert found.keys_computed == 2
    assert CompanyMatchKey.objects.get(company_id=planted["initec"]).name_key == "umbrella"
    assert frozenset((planted["initech"], planted["initec"])) not in pairs
    assert pairs[frozenset((planted["acme_com"], planted["acme_de"]))].status == DuplicateStatus.DISMISSED
    assert frozenset((planted["hooli"], planted["globex_2"])) not in pairs  # hooli.net, but "hooli holdings"
    assert found.removed == 1
    assert find_company_duplicates().keys_computed == 0


def test_a_block_too_large_is_counted_not_compared(db):
    for n in range(MAX_BLOCK + 1):
        CompanyFactory(name=f"Northwind {chr(65 + n % 26)}{n}", domain=f"nw{n}.example")

    found = find_company_duplicates()

    assert found.skipped_blocks >= 1
    assert found.pairs == 0


def test_the_search_is_the_same_few_statements_whatever_the_number_of_companies(planted):
    find_company_duplicates()
    CompanyFactory(name="Fresh Start", domain="fresh.example")
    with CaptureQueriesContext(connection) as small:
        find_company_duplicates()
    for n in range(40):
        CompanyFactory(name=f"Twin Peaks {n}", domain=f"shop{n}.twin.example")
    with CaptureQueriesContext(connection) as large:
        found = find_company_duplicates()

    assert found.keys_computed == 40
    assert found.by_evidence["same registrable domain"] == 40 * 39 // 2 + 1  # and Acme Shop / Acme Ltd
    # the same statements, less the batches that store what was found (SQLite's are small)
    assert len(_reads(large)) == len(_reads(small))
    blocks = [q for q in large.captured_queries if "OVER" in q["sql"].upper()]
    assert len(blocks) == 4  # one statement per block kind


def _reads(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("INSERT")]


@pytest.mark.parametrize(
    ("a", "b", "alike"),
    [
        ("initech solutions", "initec solutions", True),
        ("acme widgets", "acme widget", True),
        ("bank of acme", "acme bank of", True),
        ("acme", "acne", False),
        ("globex 1", "globex 2", False),
        ("acme software", "acme hardware", False),
    ],
)
def test_name_similarity(a, b, alike):
    assert (name_similarity(a, b) >= 0.9) is alike
