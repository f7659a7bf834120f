"""Finding companies that may be one organisation: keys in Python, blocking in the database,
scoring with rapidfuzz.

No company is compared with every other. The search first brings each company's match keys up to
date (CompanyMatchKey: computed in Python for the companies whose name or domain changed since, the
only step that reads companies one by one), then, as for contacts (contacts/duplicates.py), one
statement per block kind returns only the companies sharing a key with another (a block of 2 to
MAX_BLOCK), ordered by key, to be compared pairwise within the block:

- the registrable domain, by the public suffix list (shop.acme.co.uk and acme.co.uk; www. is
  already gone from every stored domain);
- the domain's name under another suffix (acme.com and acme.de), where the names are alike too;
- the name's first word, and the name after its first word: names are compared without case,
  accents, punctuation and legal form (Acme Inc, ACME GmbH & Co. KG and Acmé are all "acme"), with
  rapidfuzz's token-sort ratio; names differing in their digits never match.

A pair's score (0-1) comes from its strongest evidence, plus a little for each further one; pairs
under MIN_SCORE are dropped. `find_company_duplicates()` stores the pairs found as pending
CompanyDuplicateCandidate rows (a pair reviewed as "not a duplicate" stays dismissed) and removes
the pending pairs no longer found.

The public suffix list is the one the publicsuffixlist package ships (its version carries the
list's date); nothing is fetched at run time.
"""

from __future__ import annotations

import itertools
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, F, Window
from django.utils import timezone
from publicsuffixlist import PublicSuffixList
from rapidfuzz import fuzz

from contacts.duplicates import store_pairs
from contacts.models import Company, CompanyDuplicateCandidate, CompanyMatchKey

MAX_BLOCK = 200
MIN_SCORE = 0.75
# Two name keys at least this alike (token-sort ratio, 0-1) may be one name written differently.
NAME_MATCH = 0.9
WRITE_BATCH = 1000
# Raise it when the key rules below change: the next search recomputes every key.
KEY_VERSION = 1
# Legal forms, as words once the dots of initials are gone (S.A. -> sa): dropped from the end of a name.
LEGAL_FORMS = frozenset({
    "inc", "incorporated", "corp", "corporation", "co", "company", "ltd", "limited", "llc", "llp", "lp", "plc",
    "gmbh", "mbh", "ag", "kg", "kgaa", "ohg", "ug", "se", "sa", "sas", "sarl", "sl", "slu", "srl", "spa", "bv", "nv",
    "oy", "oyj", "ab", "as", "asa", "aps", "kk", "pty", "pte", "ltda", "sac", "cv",
})  # fmt: skip
_PSL = PublicSuffixList()
_NOT_WORD = re.compile(r"[^\w]+")
_INITIAL = re.compile(r"\b(\w)\.")  # the dots of S.A., S.p.A., B.V. (not those of Amazon.com)
_DIGITS = re.compile(r"\d+")

SAME_DOMAIN = "same registrable domain"
SAME_LABEL = "same domain name under another suffix"
SAME_NAME = "same name (legal form aside)"
SIMILAR_NAME = "similar name"


@dataclass
class Found:
    """What one search found: the pairs by evidence, the blocks too large to compare, and the time."""

    pairs: int = 0
    new: int = 0
    removed: int = 0
    keys_computed: int = 0
    by_evidence: Counter = field(default_factory=Counter)
    skipped_blocks: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        evidence = ", ".join(f"{n} {what}" for what, n in sorted(self.by_evidence.items())) or "none"
        return (
            f"{self.pairs} candidate company pairs ({self.new} new, {self.removed} no longer found); "
            f"evidence: {evidence}; match keys computed for {self.keys_computed} companies; "
            f"{self.skipped_blocks} blocks over {MAX_BLOCK} companies not compared; {self.seconds:.1f} s"
        )


# -- the keys -----------------------------------------------------------------------------------


def name_key(name: str) -> str:
    """The name as compared: lower-case, no accents or punctuation, legal forms off its end
    ("ACME GmbH & Co. KG" -> "acme"); a name that is nothing but legal forms keeps them."""
    text = unicodedata.normalize("NFKD", name.casefold().replace("&", " and "))
    text = _INITIAL.sub(r"\1", "".join(c for c in text if not unicodedata.combining(c)))
    words = _NOT_WORD.sub(" ", text).replace("_", " ").split()
    kept = list(words)
    while kept and (kept[-1] in LEGAL_FORMS or kept[-1] == "and"):  # "& Co." leaves an "and" behind
        kept.pop()
    if kept and kept[0] == "the":
        kept = kept[1:]
    return " ".join(kept or words)


def registrable_domain(domain: str) -> tuple[str, str]:
    """(registrable domain, its name less the suffix): shop.acme.co.uk -> (acme.co.uk, acme). A host
    that is itself a public suffix, or unknown to the list's rules, is its own registrable domain."""
    registrable = _PSL.privatesuffix(domain)
    if registrable is None:
        return domain, ""
    suffix = _PSL.publicsuffix(registrable) or ""
    return registrable, registrable[: -len(suffix) - 1] if suffix else registrable


def match_key(company_id: int, name: str, domain: str) -> CompanyMatchKey:
    key = name_key(name)
    first, _, rest = key.partition(" ")
    registrable, label = registrable_domain(domain)
    return CompanyMatchKey(
        company_id=company_id, name=name, domain=domain, version=KEY_VERSION, name_key=key[:200],
        first_word=first[:200], other_words=rest[:200], registrable_domain=registrable, domain_label=label,
    )  # fmt: skip


def refresh_match_keys() -> int:
    """Compute the keys of every company whose name or domain changed since (or that has none); how many."""
    current = {"match_key__name": F("name"), "match_key__domain": F("domain"), "match_key__version": KEY_VERSION}
    stale = list(Company.objects.exclude(**current).order_by("pk").values_list("pk", "name", "domain"))
    for start in range(0, len(stale), WRITE_BATCH * 5):
        CompanyMatchKey.objects.bulk_create(
            [match_key(*row) for row in stale[start : start + WRITE_BATCH * 5]],
            batch_size=WRITE_BATCH,
            update_conflicts=True,
            unique_fields=["company"],
            update_fields=[f.name for f in CompanyMatchKey._meta.concrete_fields if not f.primary_key],
        )
    return len(stale)


# -- blocks and scores --------------------------------------------------------------------------

# (evidence, key column); the name blocks give SAME_NAME or SIMILAR_NAME.
BLOCKS = [
    (SAME_DOMAIN, "registrable_domain"),
    (SAME_LABEL, "domain_label"),
    (SIMILAR_NAME, "first_word"),
    (SIMILAR_NAME, "other_words"),
]


def _block_rows(key: str) -> Iterator[list[tuple[int, str]]]:
    """The blocks of 2 or more companies sharing `key`, each as (id, name key) (a block over MAX_BLOCK
    comes back empty, uncompared); one statement, read in chunks."""
    rows = (
        CompanyMatchKey.objects.exclude(**{key: ""})
        .annotate(n=Window(Count("pk"), partition_by=[F(key)]))
        .filter(n__gt=1)
        .values_list(key, "pk", "name_key", "n")
        .order_by(key, "pk")
        .iterator(chunk_size=5000)
    )
    for _block, members in itertools.groupby(rows, key=lambda row: row[0]):
        first = next(members)
        if first[3] > MAX_BLOCK:
            yield []
            continue
        yield [(pk, name) for _, pk, name, _n in itertools.chain([first], members)]


def name_similarity(a: str, b: str) -> float:
    """How alike two name keys are (0-1, rapidfuzz's token-sort ratio); differing digits never match."""
    if not a or not b or _DIGITS.findall(a) != _DIGITS.findall(b):
        return 0.0
    return fuzz.token_sort_ratio(a, b) / 100


def _score(evidence: str, a: str, b: str) -> tuple[float, str] | None:
    """A pair's score and evidence from one block, or None when it is not evidence of one company."""
    similarity = name_similarity(a, b)
    if evidence == SAME_DOMAIN:
        return 0.85 + 0.15 * similarity, evidence
    if similarity < NAME_MATCH:
        return None
    if evidence == SAME_LABEL:
        return 0.6 + 0.35 * similarity, evidence
    return similarity - 0.15, SAME_NAME if a == b else SIMILAR_NAME


def candidate_pairs() -> tuple[dict[tuple[int, int], tuple[float, list[str]]], int]:
    """(lower id, higher id) -> (score, evidence) for every pair found; and the blocks skipped."""
    scores: dict[tuple[int, int], dict[str, float]] = {}
    skipped = 0
    for block_evidence, key in BLOCKS:
        for companies in _block_rows(key):
            if not companies:
                skipped += 1
                continue
            for (a, name_a), (b, name_b) in itertools.combinations(companies, 2):
                if (found := _score(block_evidence, name_a, name_b)) is not None:
                    score, evidence = found
                    by_evidence = scores.setdefault((a, b), {})
                    by_evidence[evidence] = max(score, by_evidence.get(evidence, 0.0))
    pairs = {}
    for pair, by_evidence in scores.items():
        ranked = sorted(by_evidence.items(), key=lambda item: -item[1])
        score = min(1.0, ranked[0][1] + 0.05 * (len(ranked) - 1))
        if score >= MIN_SCORE:
            pairs[pair] = (round(score, 3), [evidence for evidence, _ in ranked])
    return pairs, skipped


def find_company_duplicates() -> Found:
    """Search every company for duplicates and store the pairs (see the module's docstring)."""
    started, clock = timezone.now(), time.monotonic()
    with transaction.atomic():
        keys_computed = refresh_match_keys()
    pairs, skipped = candidate_pairs()
    found = Found(pairs=len(pairs), skipped_blocks=skipped, keys_computed=keys_computed)
    store_pairs(CompanyDuplicateCandidate, pairs, sides=("company_a", "company_b"), started=started, found=found)
    found.seconds = time.monotonic() - clock
    return found
