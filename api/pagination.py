"""Cursor pagination over an integer key: positions, not offsets, so pages stay stable under writes."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination, _positive_int
from rest_framework.request import Request

from api.errors import InvalidCursor, InvalidParameter

MAX_PAGE_SIZE = 500


class IdCursorPagination(CursorPagination):
    """Pages ordered by an integer column (`id` by default; views may set `cursor_ordering`)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    ordering = "id"

    def paginate_queryset(self, queryset, request: Request, view=None):
        self.ordering = getattr(view, "cursor_ordering", self.ordering)
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = _positive_int(raw, strict=True)
        except ValueError:
            raise InvalidParameter(
                f"page_size must be a whole number from 1 to {self.max_page_size}.", field="page_size"
            ) from None
        if size > self.max_page_size:
            raise InvalidParameter(f"page_size may be at most {self.max_page_size}.", field="page_size")
        return size

    def get_schema_operation_parameters(self, view) -> list[dict]:
        cursor, size = super().get_schema_operation_parameters(view)
        cursor["description"] = "The `next` or `previous` link's cursor, passed back unchanged (empty: the first page)"
        size["description"] = f"Results per page, 1 to {self.max_page_size} (default {self.page_size})"
        size["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size, "default": self.page_size}
        return [cursor, size]

    def decode_cursor(self, request: Request):
        if request.query_params.get(self.cursor_query_param) == "":
            return None  # `?cursor=` is the first page, as no cursor is
        invalid = InvalidCursor(
            "No page has this cursor: pass back the `next` or `previous` link of a page unchanged.", field="cursor"
        )
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise invalid from None
        # The position is compared with an integer column; anything else would fail in the database.
        if cursor is not None and cursor.position is not None and not str(cursor.position).lstrip("-").isdigit():
            raise invalid
        return cursor
