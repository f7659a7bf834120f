"""How much chosen segments share: pairwise member counts and Jaccard index, from stored members.

One statement: each contact in any of the segments gets a bit mask of the segments it is in
(SUM of one distinct bit per segment), and the masks are counted. Pairwise counts then come from
the mask histogram (one row per distinct combination, never per contact). Governance's
near-duplicate flag reads `overlap(...)` too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from django.db import connections

from segments.models import Membership, Segment

from .dialect import planner_settings
from .periods import BadParameter

MAX_SEGMENTS = 30
# PostgreSQL, for the one statement: the per-contact grouping is a hash table of every contact in
# any chosen segment. With the default 4MB it spilled to disk in batches; 10 segments at 100k
# contacts (275,000 memberships) took 355 ms spilled, 180 ms in memory.
WORK_MEM = "64MB"
MEMBERSHIP = Membership._meta.db_table


@dataclass(frozen=True)
class Overlap:
    segments: list[Segment]
    sizes: list[int]
    shared: list[list[int]]  # shared[i][i] is segment i's size

    def jaccard(self, i: int, j: int) -> float | None:
        union = self.sizes[i] + self.sizes[j] - self.shared[i][j]
        return self.shared[i][j] / union if union else None

    @property
    def matrix(self) -> list[list[float | None]]:
        return [[self.jaccard(i, j) for j in range(len(self.segments))] for i in range(len(self.segments))]

    def pairs(self) -> Iterator[tuple[Segment, Segment, int, float | None]]:
        """Every unordered pair once: (a, b, shared members, Jaccard)."""
        for i in range(len(self.segments)):
            for j in range(i + 1, len(self.segments)):
                yield self.segments[i], self.segments[j], self.shared[i][j], self.jaccard(i, j)


def check_count(count: int, *, parameter: str = "segments") -> None:
    if count > MAX_SEGMENTS:
        raise BadParameter(
            f"{parameter}: {count} segments chosen; overlap compares at most {MAX_SEGMENTS} at once.",
            parameter=parameter,
        )


def overlap(segments: Sequence[Segment]) -> Overlap:
    """Shared members of every pair of `segments` (at most 30) in one query."""
    segments = list(dict.fromkeys(segments))
    check_count(len(segments))
    k = len(segments)
    shared = [[0] * k for _ in range(k)]
    if k:
        bits = " ".join(f"WHEN {int(s.pk)} THEN {1 << i}" for i, s in enumerate(segments))
        marks = ", ".join(["%s"] * k)
        # Where the ORM would read memberships now (the replica, on the analytics page).
        using = Membership.objects.db
        with planner_settings(using=using, work_mem=WORK_MEM), connections[using].cursor() as cursor:
            cursor.execute(
                f"""SELECT mask, COUNT(*) FROM (
                    SELECT contact_id, SUM(CASE segment_id {bits} END) AS mask
                    FROM {MEMBERSHIP} WHERE segment_id IN ({marks}) GROUP BY contact_id
                ) masks GROUP BY mask""",
                [s.pk for s in segments],
            )
            histogram = cursor.fetchall()
        for mask, count in histogram:
            members = [i for i in range(k) if int(mask) >> i & 1]
            for a in members:
                for b in members:
                    shared[a][b] += count
    return Overlap(segments=segments, sizes=[shared[i][i] for i in range(k)], shared=shared)
