"""The criteria coverage page in the admin (segments/coverage.py): one table per criterion layer,
the fields rules read outside the plan, and a field's most common values on request."""

from __future__ import annotations

from itertools import groupby

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from contacts.models import Layer
from segments.coverage import coverage_report, top_values
from segments.models import Segment


def coverage_page(request: HttpRequest) -> HttpResponse:
    """Admin-wrapped (staff only) in segments/admin.py; `?field=<path>` adds that field's top values."""
    path = request.GET.get("field", "")
    values = None
    if path:
        try:
            values = top_values(path)
        except KeyError as error:
            messages.error(request, f"?field={path}: {error.args[0]} Pick a field from the report.")
            return HttpResponseRedirect(reverse("admin:segments_coverage"))
    report = coverage_report()
    labels = dict(Layer.choices)
    layers = [
        (labels.get(layer, layer), list(rows))
        for layer, rows in groupby(
            sorted(report.criteria, key=lambda c: list(labels).index(c.layer)), lambda c: c.layer
        )
    ]
    ctx = {
        **admin.site.each_context(request),
        "title": "Criteria coverage",
        "opts": Segment._meta,
        "report": report,
        "layers": layers,
        "field": path,
        "values": values,
        "criteria_url": reverse("admin:contacts_criterion_changelist"),
    }
    return TemplateResponse(request, "admin/segments/coverage.html", ctx)
