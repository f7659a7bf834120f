"""Finding contacts that may be one person: blocking in the database, scoring with rapidfuzz.

No contact is compared with every other. Each block is a key the database computes for every
contact in one statement, and only contacts sharing a key with another (a block of 2 to
MAX_BLOCK) come back, ordered by key, to be compared pairwise within the block:

- the mailbox: the address without its +tag, and without dots for Gmail (e-mails are unique,
  so this finds a.lovelace+news@gmail.com and alovelace@gmail.com);
- the phone number (E.164);
- company, or e-mail domain (not a free-mail one), with the last name or with the first name:
  the other name part is then compared (Jaro-Winkler), which finds typos such as Jon / John.

A pair's score (0-1) comes from its strongest evidence, plus a little for each further one;
pairs under MIN_SCORE are dropped. `find_duplicates()` stores the pairs found as pending
DuplicateCandidate rows (a pair reviewed as "not a duplicate" stays dismissed) and removes the
pending pairs no longer found.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.db import models, transaction
from django.db.models import Case, CharField, Count, Expression, F, Q, Value, When, Window
from django.db.models.functions import Cast, Concat, Lower, Replace, StrIndex, Substr
from django.utils import timezone
from rapidfuzz.distance import JaroWinkler

from contacts.models import Contact, DuplicateCandidate, DuplicateStatus
from contacts.normalize import COMMON_EMAIL_DOMAINS

# A block larger than this (a very common name at a very large company) is not compared: its
# pairs would be many and mostly wrong. The summary counts such blocks.
MAX_BLOCK = 200
MIN_SCORE = 0.75
# Two name parts at least this alike (Jaro-Winkler) may be one name mistyped.
NAME_MATCH = 0.88
WRITE_BATCH = 1000
GMAIL = ("gmail.com", "googlemail.com")
_DIGITS = re.compile(r"\d+")


class Tally(Protocol):
    """What `store_pairs` counts in a search's result (contacts' Found, or companies')."""

    new: int
    removed: int
    by_evidence: Counter


@dataclass
class Found:
    """What one search found: the pairs by evidence, the blocks too large to compare, and the time."""

    pairs: int = 0
    new: int = 0
    removed: int = 0
    by_evidence: Counter = field(default_factory=Counter)
    skipped_blocks: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        evidence = ", ".join(f"{n} {what}" for what, n in sorted(self.by_evidence.items())) or "none"
        return (
            f"{self.pairs} candidate pairs ({self.new} new, {self.removed} no longer found); evidence: {evidence}; "
            f"{self.skipped_blocks} blocks over {MAX_BLOCK} contacts not compared; {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class Person:
    pk: int
    first: str
    last: str


# -- the block keys, as database expressions ---------------------------------------------------

_AT = StrIndex("email", Value("@"))
_PLUS = StrIndex("email", Value("+"))
_DOMAIN = Substr("email", _AT + 1)
_LOCAL = Case(
    When(Q(plus__gt=0) & Q(plus__lt=F("at")), then=Substr("email", 1, F("plus") - 1)),
    default=Substr("email", 1, F("at") - 1),
)


def _mailbox() -> Expression:
    gmail = Q(domain__in=GMAIL)
    local = Case(When(gmail, then=Replace(_LOCAL, Value("."), Value(""))), default=_LOCAL)
    domain = Case(When(gmail, then=Value("gmail.com")), default=F("domain"))
    return Concat(local, Value("@"), domain, output_field=CharField())


def _blocks() -> list[tuple[str, Expression | F, Q, str]]:
    """(name, key, which contacts have one, the name part left to compare)."""
    company = Cast("company_id", CharField())
    own_domain = ~Q(domain__in=COMMON_EMAIL_DOMAINS)
    return [
        ("same mailbox (+tag or dots)", _mailbox(), Q(), ""),
        ("same phone", F("phone"), ~Q(phone=""), ""),
        ("same company and last name", Concat(company, Value("|"), Lower("last_name")),
         Q(company__isnull=False) & ~Q(last_name=""), "first"),
        ("same company and first name", Concat(company, Value("|"), Lower("first_name")),
         Q(company__isnull=False) & ~Q(first_name=""), "last"),
        ("same e-mail domain and last name", Concat(F("domain"), Value("|"), Lower("last_name")),
         own_domain & ~Q(last_name=""), "first"),
        ("same e-mail domain and first name", Concat(F("domain"), Value("|"), Lower("first_name")),
         own_domain & ~Q(first_name=""), "last"),
    ]  # fmt: skip


def _keyed(key: Expression | F, has_key: Q):
    return Contact.objects.annotate(at=_AT, plus=_PLUS, domain=_DOMAIN).filter(has_key).annotate(block=key).order_by()


def _block_rows(key: Expression | F, has_key: Q) -> Iterator[tuple[str, list[Person]]]:
    """The blocks of 2 or more contacts sharing `key`, each with its contacts (a block over
    MAX_BLOCK comes back empty, uncompared); one statement, read in chunks."""
    rows = (
        _keyed(key, has_key)
        .annotate(n=Window(Count("pk"), partition_by=[F("block")]))
        .filter(n__gt=1)
        .values_list("block", "pk", "first_name", "last_name", "n")
        .order_by("block", "pk")
        .iterator(chunk_size=5000)
    )
    for block, members in itertools.groupby(rows, key=lambda row: row[0]):
        first = next(members)
        if first[4] > MAX_BLOCK:
            yield block, []
            continue
        yield (
            block,
            [
                Person(pk, first_name.lower().strip(), last_name.lower().strip())
                for _, pk, first_name, last_name, _n in itertools.chain([first], members)
            ],
        )


# -- scoring ------------------------------------------------------------------------------------


def name_similarity(a: str, b: str) -> float:
    """Jaro-Winkler similarity of two name parts (0-1); names differing in their digits never match."""
    if not a or not b:
        return 0.0
    if _DIGITS.findall(a) != _DIGITS.findall(b):
        return 0.0
    return JaroWinkler.normalized_similarity(a, b)


def _full_name_similarity(a: Person, b: Person) -> float:
    """How alike two people's names are: the weaker of first and last name (a part missing on
    either side counts as unknown, slightly below a match)."""
    parts = [name_similarity(x, y) if x and y else 0.9 for x, y in ((a.first, b.first), (a.last, b.last))]
    if not (a.first or a.last) or not (b.first or b.last):
        return 0.5
    return min(parts)


def _score(evidence: str, a: Person, b: Person, compare: str) -> float | None:
    """A pair's score from one piece of evidence, or None when it is not evidence of one person."""
    if evidence.startswith("same mailbox"):
        return 0.9 + 0.1 * _full_name_similarity(a, b)
    if evidence == "same phone":
        similarity = _full_name_similarity(a, b)
        return 0.6 + 0.4 * similarity if similarity >= 0.5 else None
    similarity = name_similarity(getattr(a, compare), getattr(b, compare))
    return 0.2 + 0.8 * similarity if similarity >= NAME_MATCH else None


def candidate_pairs() -> tuple[dict[tuple[int, int], tuple[float, list[str]]], int]:
    """(lower id, higher id) -> (score, evidence) for every pair found; and the blocks skipped."""
    scores: dict[tuple[int, int], list[tuple[float, str]]] = {}
    skipped = 0
    for evidence, key, has_key, compare in _blocks():
        for _block, people in _block_rows(key, has_key):
            if not people:
                skipped += 1
                continue
            for a, b in itertools.combinations(people, 2):
                score = _score(evidence, a, b, compare)
                if score is not None:
                    scores.setdefault((a.pk, b.pk), []).append((score, evidence))
    pairs = {}
    for pair, found in scores.items():
        found.sort(reverse=True)
        score = min(1.0, found[0][0] + 0.05 * (len(found) - 1))
        if score >= MIN_SCORE:
            pairs[pair] = (round(score, 3), [evidence for _, evidence in found])
    return pairs, skipped


def find_duplicates() -> Found:
    """Search every contact for duplicates and store the pairs (see the module's docstring)."""
    started, clock = timezone.now(), time.monotonic()
    pairs, skipped = candidate_pairs()
    found = Found(pairs=len(pairs), skipped_blocks=skipped)
    store_pairs(DuplicateCandidate, pairs, sides=("contact_a", "contact_b"), started=started, found=found)
    found.seconds = time.monotonic() - clock
    return found


def store_pairs(
    model: type[models.Model],
    pairs: dict[tuple[int, int], tuple[float, list[str]]],
    *,
    sides: tuple[str, str],
    started: datetime,
    found: Tally,
) -> None:
    """Store the pairs a search found (contacts' or companies'; score and evidence refreshed on pairs
    stored before), drop the pending pairs it no longer finds, and count both in `found`."""
    for _score_value, evidence in pairs.values():
        found.by_evidence.update(evidence)
    a, b = sides
    manager = model._default_manager
    with transaction.atomic():
        before = manager.count()
        rows = [
            model(**{f"{a}_id": x, f"{b}_id": y}, score=score, evidence=evidence, found_at=started)
            for (x, y), (score, evidence) in pairs.items()
        ]
        manager.bulk_create(
            rows,
            batch_size=WRITE_BATCH,
            update_conflicts=True,
            unique_fields=[a, b],
            update_fields=["score", "evidence", "found_at"],
        )
        found.removed, _ = manager.filter(status=DuplicateStatus.PENDING, found_at__lt=started).delete()
        found.new = manager.count() - before + found.removed
