"""What every API view shares: the filter backends, pagination, and reading bulk request bodies."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.request import Request

from api.errors import PayloadTooLarge
from api.filters import DocumentedSearchFilter, KnownParametersOnly
from api.pagination import IdCursorPagination
from contacts.ingest import MAX_ROWS

LIST_BACKENDS = [KnownParametersOnly, DjangoFilterBackend, DocumentedSearchFilter]
DETAIL_BACKENDS = [KnownParametersOnly]


class ListOptions(generics.GenericAPIView):
    """Mixed into list views: strict filters, search where `search_fields` is set, cursor pages."""

    filter_backends = LIST_BACKENDS
    pagination_class = IdCursorPagination


def bulk_rows(request: Request) -> list:
    """The `rows` list of a bulk request, refused whole (413) above MAX_ROWS."""
    data = request.data
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise exceptions.ValidationError({"rows": ['Send {"rows": [ ... ]}: a list of row objects.']})
    if len(data) > 1:
        unknown = sorted(str(key) for key in data if key != "rows")
        raise exceptions.ValidationError({unknown[0]: [f"Unknown field {unknown[0]!r}; send only rows."]})
    if len(rows) > MAX_ROWS:
        raise PayloadTooLarge(
            f"Too many rows: {len(rows)} sent, at most {MAX_ROWS} per request; split the batch.",
            field="rows",
            details={"limit": MAX_ROWS, "received": len(rows)},
        )
    return rows


def row_failures(failed: dict[int, dict[str, list[str]]]) -> list[dict]:
    """Per-row errors with full JSON paths (`rows[3].email`), in row order."""
    out = []
    for index in sorted(failed):
        errors = [
            {"path": f"rows[{index}].{name}" if name else f"rows[{index}]", "message": message, "code": "invalid"}
            for name, messages in failed[index].items()
            for message in messages
        ]
        out.append({"index": index, "errors": errors})
    return out


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([])
@throttle_classes([])
def not_found(request: Request, path: str = ""):
    """Any URL under /api/ that matches no endpoint: a JSON 404 rather than Django's HTML page."""
    raise exceptions.NotFound(f"No API endpoint at /{request.path.lstrip('/')}; see /api/docs/.")
