"""`?name=` with nothing after it means the same as leaving `name` out, on every API endpoint.

Forms and generated clients send empty parameters for fields left blank; the schema says so with
`allowEmptyValue: true` on every optional query parameter (api/schema.py).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, QueryDict


class EmptyQueryParamsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/v1/"):
            lists = {name: [value for value in values if value != ""] for name, values in request.GET.lists()}
            if any(len(values) != len(request.GET.getlist(name)) for name, values in lists.items()):
                kept = [(name, value) for name, values in lists.items() for value in values]
                request.GET = QueryDict(urlencode(kept))
        return self.get_response(request)
