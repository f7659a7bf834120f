"""Offset paging that never counts: fetch one row more than the page to know whether another follows.

COUNT(*) over a million contacts costs more than the page itself, and a rep does not need the total.
"""

from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import QueryDict


@dataclass(frozen=True)
class Page:
    rows: list
    number: int
    size: int
    has_next: bool

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


def fetch_page(queryset: QuerySet, *, number: int, size: int) -> Page:
    start = (number - 1) * size
    rows = list(queryset[start : start + size + 1])
    return Page(rows=rows[:size], number=number, size=size, has_next=len(rows) > size)


def page_query(params: QueryDict, *, key: str, number: int) -> str:
    """The current query string with `key` set to `number`, for next/previous links."""
    query = params.copy()
    query[key] = str(number)
    return query.urlencode()
