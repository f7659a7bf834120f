"""Offset paging: fetch one row more than the page to know whether another follows.

A full COUNT(*) over a million contacts costs more than the page itself, so a page that shows a
total counts at most COUNT_CAP + 1 matches (`capped_count`) and says "of 10,000+" beyond that.
"""

from dataclasses import dataclass
from typing import Protocol

from django.db.models import QuerySet
from django.http import QueryDict

COUNT_CAP = 10_000


class CountsUpTo(Protocol):
    def count_up_to(self, cap: int) -> int: ...


@dataclass(frozen=True)
class Page:
    rows: list
    number: int
    size: int
    has_next: bool
    total: int | None = None  # the matches counted, at most COUNT_CAP + 1 (None: not counted)

    @property
    def total_text(self) -> str:
        """ "1,234", or "10,000+" when there are more than COUNT_CAP."""
        if self.total is None:
            return ""
        return f"{COUNT_CAP:,}+" if self.total > COUNT_CAP else f"{self.total:,}"

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def first_index(self) -> int:
        return (self.number - 1) * self.size + 1 if self.rows else 0

    @property
    def last_index(self) -> int:
        return (self.number - 1) * self.size + len(self.rows)


def page_number(params: QueryDict, key: str = "page") -> int:
    try:
        number = int(params.get(key, "1"))
    except ValueError:
        return 1
    return max(1, min(number, 10_000))


def fetch_page(queryset, *, number: int, size: int, count: bool = False) -> Page:
    """Rows `number` of `size`; with `count`, also the number of matches up to COUNT_CAP + 1."""
    start = (number - 1) * size
    rows = list(queryset[start : start + size + 1])
    has_next = len(rows) > size
    total = None
    if count:
        # Known without counting when this page is the last one.
        total = start + len(rows) if not has_next and rows else capped_count(queryset, COUNT_CAP)
    return Page(rows=rows[:size], number=number, size=size, has_next=has_next, total=total)


def capped_count(source: QuerySet | CountsUpTo, cap: int) -> int:
    """How many rows `source` holds, counting no further than cap + 1 (one bounded statement)."""
    if isinstance(source, QuerySet):
        return source.order_by().values("pk")[: cap + 1].count()
    return source.count_up_to(cap)


def page_query(params: QueryDict, *, key: str, number: int) -> str:
    """The current query string with `key` set to `number`, for next/previous links."""
    query = params.copy()
    query[key] = str(number)
    return query.urlencode()
