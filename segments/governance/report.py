"""The governance report: every segment with its owners, reviews, due dates and health flags.

Read in a fixed number of queries whatever the number of segments (the segments with their owners
and stored health, then the schedules: policies and last reviews), filtered and sorted in Python.
The admin page, its CSV and the API serve the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.conf import settings
from django.utils import timezone

from segments.models import ReviewKind, Segment, SegmentCategory, SegmentStatus

from .cadence import Due, schedules
from .health import Flag, Sprawl, live_flags, sprawl


class BadFilter(ValueError):
    def __init__(self, message: str, *, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass
class Row:
    segment: Segment
    due: dict[str, Due]
    flags: list[Flag]
    checked_at: datetime | None  # when the stored flags were computed (None: not yet)
    today: date

    @property
    def next_due(self) -> date | None:
        dates = [due.due for due in self.due.values() if due.due is not None]
        return min(dates) if dates else None

    @property
    def overdue_days(self) -> int:
        return max((due.overdue_days(self.today) for due in self.due.values()), default=0)

    @property
    def cells(self) -> list[tuple[Due, str]]:
        """(due, state) per review kind, in the kinds' order."""
        return [(due, self.state(kind)) for kind, due in self.due.items()]

    def state(self, kind: str) -> str:
        return self.due[kind].state(self.today, ahead_days=settings.GOVERNANCE_REMIND_AHEAD_DAYS)

    def as_dict(self) -> dict:
        segment = self.segment
        return {
            "id": segment.pk,
            "slug": segment.slug,
            "name": segment.name,
            "kind": segment.kind,
            "category": segment.category,
            "status": segment.status,
            "size": segment.size,
            "owner": segment.owner.get_username() if segment.owner else None,
            "backup_owner": segment.backup_owner.get_username() if segment.backup_owner else None,
            "reviews": {
                kind: {
                    "cadence": due.cadence.label,
                    "last_reviewed_at": due.last_reviewed_at.isoformat() if due.last_reviewed_at else None,
                    "next_due": due.due.isoformat() if due.due else None,
                    "state": self.state(kind),
                }
                for kind, due in self.due.items()
            },
            "next_due": self.next_due.isoformat() if self.next_due else None,
            "overdue_days": self.overdue_days,
            "flags": [flag.as_dict() for flag in self.flags],
            "health_checked_at": self.checked_at.isoformat() if self.checked_at else None,
        }


SORTS = {
    "name": lambda row: row.segment.name.lower(),
    "owner": lambda row: row.segment.owner.get_username() if row.segment.owner else "",
    "category": lambda row: row.segment.category,
    "size": lambda row: row.segment.size,
    "next_due": lambda row: row.next_due or date.max,
    "overdue": lambda row: row.overdue_days,
    "flags": lambda row: len(row.flags),
}


@dataclass(frozen=True)
class Filters:
    mine: bool = False
    overdue: bool = False
    unhealthy: bool = False
    category: str = ""
    owner: int | None = None
    status: str = ""
    sort: str = "name"


def read_filters(params, *, flag_names=("mine", "overdue", "unhealthy")) -> Filters:
    """Filters from query parameters; a bad value raises BadFilter naming the parameter."""
    values = {}
    for name in flag_names:
        raw = params.get(name, "")
        if raw not in ("", "0", "1", "true", "false"):
            raise BadFilter(f"{name}: {raw!r} is not 1 or 0.", parameter=name)
        values[name] = raw in ("1", "true")
    category = params.get("category", "")
    if category and category not in SegmentCategory.values:
        raise BadFilter(
            f"category: {category!r} is not a category; use one of {', '.join(SegmentCategory.values)}.",
            parameter="category",
        )
    status = params.get("status", "")
    if status and status not in SegmentStatus.values:
        raise BadFilter(
            f"status: {status!r} is not a status; use one of {', '.join(SegmentStatus.values)}.", parameter="status"
        )
    owner = params.get("owner", "")
    if owner and not (owner.isdigit() and 1 <= int(owner) <= 2**63 - 1):
        raise BadFilter(f"owner: {owner!r} is not a user id.", parameter="owner")
    sort = params.get("sort", "") or "name"
    if sort.lstrip("-") not in SORTS:
        raise BadFilter(
            f"sort: {sort!r} is not a column; use one of {', '.join(SORTS)} (- descends).", parameter="sort"
        )
    return Filters(category=category, status=status, owner=int(owner) if owner else None, sort=sort, **values)


@dataclass
class Report:
    rows: list[Row]
    sprawl: Sprawl
    total: int


def governance_report(filters: Filters, *, user=None, today: date | None = None) -> Report:
    today = today or timezone.localdate()
    # The rule and thresholds are JSON the report never reads: not decoding them saves a fifth of its time.
    everything = (
        Segment.objects.select_related("owner", "backup_owner", "health")
        .defer("rule", "percent_thresholds", "description")
        .order_by("name")
    )
    segments = list(everything)
    shown = segments
    if filters.mine and user is not None:
        shown = [s for s in shown if user.pk in (s.owner_id, s.backup_owner_id)]
    if filters.category:
        shown = [s for s in shown if s.category == filters.category]
    if filters.status:
        shown = [s for s in shown if s.status == filters.status]
    if filters.owner is not None:
        shown = [s for s in shown if filters.owner in (s.owner_id, s.backup_owner_id)]
    due = schedules(shown)
    rows = []
    for segment in shown:
        health = getattr(segment, "health", None)
        stored = [Flag(**flag) for flag in health.flags] if health else []
        flags = live_flags(segment, due[segment.pk], today=today) + stored
        rows.append(Row(segment, due[segment.pk], flags, health.checked_at if health else None, today))
    if filters.overdue:
        rows = [row for row in rows if row.overdue_days]
    if filters.unhealthy:
        rows = [row for row in rows if row.flags]
    rows.sort(key=SORTS[filters.sort.lstrip("-")], reverse=filters.sort.startswith("-"))
    return Report(rows=rows, sprawl=sprawl(segments), total=len(segments))


KINDS = list(ReviewKind)
CSV_HEADER = [
    "id", "slug", "name", "category", "status", "size", "owner", "backup_owner",
    *[f"{kind.value}_{column}" for kind in KINDS for column in ("last_reviewed", "next_due", "state")],
    "overdue_days", "flags", "evidence",
]  # fmt: skip


def csv_rows(report: Report) -> list[list]:
    out = [CSV_HEADER]
    for row in report.rows:
        data = row.as_dict()
        reviews = [
            value
            for kind in KINDS
            for value in (
                data["reviews"][kind.value]["last_reviewed_at"] or "",
                data["reviews"][kind.value]["next_due"] or "",
                data["reviews"][kind.value]["state"],
            )
        ]
        out.append(
            [
                data["id"], data["slug"], data["name"], data["category"], data["status"], data["size"],
                data["owner"] or "", data["backup_owner"] or "", *reviews, data["overdue_days"],
                "; ".join(flag.label for flag in row.flags), " | ".join(flag.evidence for flag in row.flags),
            ]
        )  # fmt: skip
    return out
