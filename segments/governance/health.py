"""Health and staleness: flags on a segment, each with the evidence that raised it.

Two kinds. Live flags come from the segment row and its review schedule and cost no query of
their own: never reviewed, review overdue, no active owner, refresh failing. Stored flags need the
membership, history, usage and contact data, so the daily job (`check_health`) computes them for
every segment at once, set-based, and keeps them in SegmentHealth: empty for 30+ days, size
swing over 7 days, unused, a rule reading a sparsely filled field, near-duplicate of another
segment. Every threshold is a GOVERNANCE_* setting.

Near-duplicates: the Jaccard index of two segments' members cannot exceed the ratio of their
sizes, so only pairs whose sizes are within the threshold are candidates. With many segments
there are thousands of such pairs (1,000 segments over 100k contacts: 16,860), too many to count
members of each exactly, so each candidate segment gets a MinHash sketch in one statement (per
bin of a hash of the contact id, the smallest hash among its members: one-permutation hashing),
the sketches estimate every pair's Jaccard index, and only pairs whose estimate comes within
SCREEN_MARGIN of the threshold have their shared members counted exactly, by one statement per
batch of pairs. Pairs of small segments, too small for a sketch to say, are counted exactly from
their members, read in one statement. Every flag states an exact count.
(`segments.analytics.overlap.overlap` counts every pair among at most 30 chosen segments with bit
masks; here there can be a thousand segments and only the close-sized pairs matter.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max
from django.utils import timezone

from contacts.models import Contact
from segments.graph import dependency_graph
from segments.models import (
    Membership,
    ReviewKind,
    Segment,
    SegmentDay,
    SegmentHealth,
    SegmentStatus,
)
from segments.pages.segment_page import segment_histories
from segments.rules.compiler import set_condition, value_expression
from segments.rules.registry import get_fields

from .cadence import Due
from .usage import use_counts

MEMBERSHIP = Membership._meta.db_table
PAIR_BATCH = 400  # pairs per statement (two parameters each, under SQLite's variable limit)
# Pairs screened by sketches when there are more candidates than this (fewer are counted exactly).
EXACT_PAIRS = 200
SKETCH_BINS = 256
# The hash: a*x mod p (p the largest prime below 2**32), computed alike by PostgreSQL and SQLite.
HASH_MULTIPLIER, HASH_PRIME = 2_654_435_761, 4_294_967_291
# A pair is counted exactly when its estimate is within this of the threshold: the estimate's
# standard error is at most about 0.03 once a pair's members fill the bins, so 0.15 is five of them.
SCREEN_MARGIN = 0.15
# ...or when the smaller segment has fewer members than this: too few for the bins to estimate.
SKETCH_MIN_MEMBERS = 4 * SKETCH_BINS


@dataclass(frozen=True)
class Flag:
    code: str
    label: str
    evidence: str

    def as_dict(self) -> dict:
        return asdict(self)


def _day(value: date | None) -> str:
    return value.isoformat() if value else "never"


# --- live flags ---


def live_flags(segment: Segment, schedule: dict[str, Due], *, today: date) -> list[Flag]:
    """Never reviewed, review overdue, no active owner, refresh failing (no query: the segment's
    owners must be loaded with it)."""
    flags: list[Flag] = []
    if segment.status == SegmentStatus.ARCHIVED:
        return flags
    if all(due.last_reviewed_at is None for due in schedule.values()):
        created = _day(timezone.localdate(segment.created_at))
        flags.append(Flag("never_reviewed", "Never reviewed", f"no review since it was created on {created}"))
    overdue = [due for due in schedule.values() if due.overdue_days(today)]
    if overdue:
        text = "; ".join(
            f"{ReviewKind(due.kind).label} due {_day(due.due)}, {due.overdue_days(today)} days overdue"
            for due in overdue
        )
        flags.append(Flag("review_overdue", "Review overdue", text))
    owner = segment.owner
    if owner is None or not owner.is_active:
        who = "no owner" if owner is None else f"owner {owner.get_username()} is deactivated"
        backup = segment.backup_owner
        standby = f"; backup {backup.get_username()} stands in" if backup is not None and backup.is_active else ""
        flags.append(Flag("no_active_owner", "No active owner", who + standby))
    if segment.last_refresh_status == "failed":
        flags.append(
            Flag(
                "refresh_failing",
                "Refresh failing",
                f"{segment.refresh_failures} failed in a row; last error: {segment.last_refresh_error[:300]}",
            )
        )
    return flags


# --- stored flags (the daily job) ---


def _empty(segments: list[Segment], *, today: date) -> Iterator[tuple[int, Flag]]:
    days = settings.GOVERNANCE_EMPTY_DAYS
    empty = [s for s in segments if s.size == 0 and timezone.localdate(s.created_at) <= today - timedelta(days=days)]
    last_full = dict(
        SegmentDay.objects.filter(segment__in=empty, size__gt=0)
        .order_by()
        .values_list("segment_id")
        .annotate(Max("day"))
    )
    for segment in empty:
        last = last_full.get(segment.pk)
        if last is None:
            yield segment.pk, Flag("empty", f"Empty for {days}+ days", "no members since it was created")
        elif last <= today - timedelta(days=days):
            yield (
                segment.pk,
                Flag("empty", f"Empty for {days}+ days", f"no members since {_day(last + timedelta(days=1))}"),
            )


def _swings(segments: list[Segment], *, now: datetime) -> Iterator[tuple[int, Flag]]:
    span, limit = settings.GOVERNANCE_SWING_DAYS, settings.GOVERNANCE_SWING_PERCENT
    histories = segment_histories(segments, now=now, span=span + 1)
    for segment in segments:
        then, size = histories[segment.pk].sizes[0], segment.size
        if then and abs(size - then) * 100 > limit * then:
            change = (size - then) * 100 / then
            yield (
                segment.pk,
                Flag(
                    "size_swing",
                    f"Size changed by more than {limit}% in {span} days",
                    f"{then:,} → {size:,} members since {_day(histories[segment.pk].days[0])} ({change:+.0f}%)",
                ),
            )


def _unused(segments: list[Segment], *, now: datetime) -> Iterator[tuple[int, Flag]]:
    days = settings.GOVERNANCE_UNUSED_DAYS
    since = now - timedelta(days=days)
    old = [s for s in segments if s.created_at <= since]
    if not old:
        return
    used = use_counts(s.pk for s in old)
    depended_on = {dependency for dependencies in dependency_graph().values() for dependency in dependencies}
    for segment in old:
        read = segment.last_api_read_at
        if segment.pk in used or segment.pk in depended_on or (read is not None and read >= since):
            continue
        last_read = (
            f"last read through the API on {_day(timezone.localdate(read))}" if read else "never read through the API"
        )
        yield (
            segment.pk,
            Flag(
                "unused",
                f"Unused for {days} days",
                "no activation, automation, campaign variant, experiment, child segment or in_segment reader; "
                + last_read,
            ),
        )


def fields_read(rule: object) -> set[str]:
    """Every field path a rule's conditions name, however deep."""
    found, pending = set(), [rule]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            if isinstance(node.get("field"), str):
                found.add(node["field"])
            pending.extend(node[key] for key in ("all", "any", "not") if key in node)
    return found


def fill_rates(paths: set[str]) -> tuple[int, dict[str, int]]:
    """(contacts, {path: contacts with a value}) for the registry's fields among `paths`, in one
    scan of the contacts. Derived fields (metrics.*, propensity scores among them) are left out: they are filled
    by the system, not by data capture."""
    registry = get_fields()
    fields = {path: registry[path] for path in sorted(paths) if path in registry and not path.startswith("metrics.")}
    counts = {f"f{i}": Count("pk", filter=set_condition(f, value_expression(f))) for i, f in enumerate(fields.values())}
    totals = Contact.objects.aggregate(total=Count("pk"), **counts)
    return totals["total"], {path: totals[f"f{i}"] for i, path in enumerate(fields)}


def _sparse(segments: list[Segment]) -> Iterator[tuple[int, Flag]]:
    limit = settings.GOVERNANCE_FILL_PERCENT
    reads = {s.pk: fields_read(s.rule) for s in segments if s.is_rule_based}
    total, filled = fill_rates(set().union(*reads.values())) if reads else (0, {})
    if not total:
        return
    labels = {path: field.label for path, field in get_fields().items()}
    for segment_id, paths in reads.items():
        sparse = [p for p in sorted(paths) if p in filled and filled[p] * 100 < limit * total]
        if sparse:
            yield (
                segment_id,
                Flag(
                    "sparse_field",
                    f"Reads a field filled for under {limit}% of contacts",
                    "; ".join(
                        f"{labels[p]} ({p}) is set for {filled[p] * 100 / total:.1f}% of contacts "
                        f"({filled[p]:,} of {total:,})"
                        for p in sparse
                    ),
                ),
            )


def candidate_pairs(sizes: dict[int, int], *, threshold: float) -> list[tuple[int, int]]:
    """Pairs (a, b) whose sizes allow a Jaccard index of `threshold`: smaller >= threshold x larger."""
    ordered = sorted((size, pk) for pk, size in sizes.items() if size > 0)
    pairs = []
    for i, (small, a) in enumerate(ordered):
        for large, b in ordered[i + 1 :]:
            if small < threshold * large:
                break
            pairs.append((a, b))
    return pairs


def shared_members(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Members shared by each pair, by statements of PAIR_BATCH pairs on the membership table."""
    shared = {}
    for start in range(0, len(pairs), PAIR_BATCH):
        batch = pairs[start : start + PAIR_BATCH]
        values = ", ".join(["(%s, %s)"] * len(batch))
        with connection.cursor() as cursor:
            cursor.execute(
                f"""WITH pairs(a, b) AS (VALUES {values})
                SELECT pairs.a, pairs.b, COUNT(*) FROM pairs
                JOIN {MEMBERSHIP} ma ON ma.segment_id = pairs.a
                JOIN {MEMBERSHIP} mb ON mb.segment_id = pairs.b AND mb.contact_id = ma.contact_id
                GROUP BY pairs.a, pairs.b""",
                [pk for pair in batch for pk in pair],
            )
            shared.update({(a, b): n for a, b, n in cursor.fetchall()})
    return shared


def sketches(segment_ids: list[int]) -> dict[int, dict[int, int]]:
    """Each segment's MinHash sketch: {bin: smallest hash of a member in that bin}, one statement."""
    found: dict[int, dict[int, int]] = {pk: {} for pk in segment_ids}
    if not segment_ids:
        return found
    marks = ", ".join(["%s"] * len(segment_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT segment_id, h %% {SKETCH_BINS}, MIN(h) FROM (
                SELECT segment_id, (contact_id * {HASH_MULTIPLIER}) %% {HASH_PRIME} AS h
                FROM {MEMBERSHIP} WHERE segment_id IN ({marks})
            ) hashed GROUP BY 1, 2""",
            segment_ids,
        )
        for segment_id, bin_, smallest in cursor.fetchall():
            found[segment_id][bin_] = smallest
    return found


def estimated_jaccard(a: dict[int, int], b: dict[int, int]) -> float:
    """The share of the bins filled in either sketch whose smallest hashes agree."""
    filled = a.keys() | b.keys()
    return sum(1 for bin_ in filled if a.get(bin_) == b.get(bin_)) / len(filled) if filled else 0.0


def near_duplicate_pairs(sizes: dict[int, int], *, threshold: float) -> dict[tuple[int, int], int]:
    """Shared members of every pair whose Jaccard index may reach `threshold`: all close-sized
    pairs when they are few, else those the sketches cannot rule out."""
    pairs = candidate_pairs(sizes, threshold=threshold)
    if len(pairs) <= EXACT_PAIRS:
        return shared_members(pairs)
    small = [(a, b) for a, b in pairs if min(sizes[a], sizes[b]) < SKETCH_MIN_MEMBERS]
    large = [(a, b) for a, b in pairs if min(sizes[a], sizes[b]) >= SKETCH_MIN_MEMBERS]
    sketch = sketches(sorted({pk for pair in large for pk in pair}))
    return {
        **shared_among_small(small),
        **shared_members(
            [(a, b) for a, b in large if estimated_jaccard(sketch[a], sketch[b]) >= threshold - SCREEN_MARGIN]
        ),
    }


def shared_among_small(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Shared members of pairs of small segments (under SKETCH_MIN_MEMBERS / threshold members
    each), counted here from their members, read in one statement: thousands of tiny pairs cost
    milliseconds each as joins on the membership table, and microseconds as set intersections."""
    ids = sorted({pk for pair in pairs for pk in pair})
    members: dict[int, set[int]] = {pk: set() for pk in ids}
    if ids:
        marks = ", ".join(["%s"] * len(ids))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT segment_id, contact_id FROM {MEMBERSHIP} WHERE segment_id IN ({marks})", ids)
            for segment_id, contact_id in cursor.fetchall():
                members[segment_id].add(contact_id)
    shared = {(a, b): len(members[a] & members[b]) for a, b in pairs}
    return {pair: n for pair, n in shared.items() if n}


def _duplicates(segments: list[Segment]) -> Iterator[tuple[int, Flag]]:
    threshold = settings.GOVERNANCE_DUPLICATE_PERCENT / 100
    by_id = {s.pk: s for s in segments}
    for (a, b), n in sorted(near_duplicate_pairs({s.pk: s.size for s in segments}, threshold=threshold).items()):
        union = by_id[a].size + by_id[b].size - n
        jaccard = n / union if union else 0
        if jaccard < threshold:
            continue
        for this, other in ((by_id[a], by_id[b]), (by_id[b], by_id[a])):
            yield (
                this.pk,
                Flag(
                    "near_duplicate",
                    "Near-duplicate of another segment",
                    f"shares {n:,} members with {other.name} ({other.slug}): Jaccard {jaccard:.2f} "
                    f"({this.size:,} and {other.size:,} members)",
                ),
            )


def stored_flags(segments: list[Segment], *, now: datetime) -> dict[int, list[Flag]]:
    """The costly flags of these (non-archived) segments."""
    flags: dict[int, list[Flag]] = {s.pk: [] for s in segments}
    active = [s for s in segments if s.status == SegmentStatus.ACTIVE]
    for found in (
        _empty(active, today=timezone.localdate(now)),
        _swings(active, now=now),
        _unused(segments, now=now),
        _sparse(active),
        _duplicates(active),
    ):
        for segment_id, flag in found:
            flags[segment_id].append(flag)
    return flags


def check_health(*, now: datetime | None = None) -> dict[int, list[Flag]]:
    """Compute the stored flags of every segment not archived and keep them (one row each)."""
    now = now or timezone.now()
    segments = list(Segment.objects.exclude(status=SegmentStatus.ARCHIVED).order_by("pk"))
    flags = stored_flags(segments, now=now)
    rows = [
        SegmentHealth(segment_id=pk, flags=[f.as_dict() for f in found], checked_at=now) for pk, found in flags.items()
    ]
    with transaction.atomic():
        SegmentHealth.objects.exclude(segment_id__in=flags).delete()
        SegmentHealth.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["segment"], update_fields=["flags", "checked_at"]
        )
    return flags


# --- sprawl ---


@dataclass(frozen=True)
class Sprawl:
    primary: int
    minimum: int
    maximum: int

    @property
    def verdict(self) -> str:
        if self.primary > self.maximum:
            return f"{self.primary} primary segments: more than the strategy's {self.minimum}–{self.maximum}"
        if self.primary < self.minimum:
            return f"{self.primary} primary segments: fewer than the strategy's {self.minimum}–{self.maximum}"
        return f"{self.primary} primary segments: within the strategy's {self.minimum}–{self.maximum}"


def is_primary(segment: Segment) -> bool:
    """An active top-level segment that is not a suppression list: what the strategy counts."""
    return segment.status == SegmentStatus.ACTIVE and segment.parent_id is None and not segment.is_suppression


def sprawl(segments: list[Segment]) -> Sprawl:
    return Sprawl(
        sum(is_primary(s) for s in segments), settings.GOVERNANCE_PRIMARY_MIN, settings.GOVERNANCE_PRIMARY_MAX
    )
