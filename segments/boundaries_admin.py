"""Admin pages for boundary tests and dimension comparison (segments/boundaries.py does the work)."""

from __future__ import annotations

from itertools import pairwise

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from segments.boundaries import (
    SCHEMES,
    BadInput,
    Bracket,
    boundary_test,
    compare_dimensions,
    create_bracket_segments,
)
from segments.models import Segment, SegmentStatus
from segments.rules.registry import get_fields

OUTCOME_CHOICES = [
    ("converted", "Converted (won deal or purchase)"),
    ("engaged", "Engaged (open, click, visit, download or form)"),
    ("responded", "Responded (e-mail click; on one campaign if named)"),
]


def read_bracketings(text: str) -> list[list[Bracket]]:
    """One bracketing per line, as starting points: '1, 50, 250' is 1–49 / 50–249 / 250+."""
    bracketings = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            starts = [float(part) for part in line.replace(";", ",").split(",") if part.strip()]
        except ValueError:
            raise forms.ValidationError(f"Line {number}: write starting points as numbers, e.g. 1, 50, 250.") from None
        if len(starts) < 2:
            raise forms.ValidationError(f"Line {number}: give at least two starting points (two brackets).")
        for low, high in pairwise(starts):
            if high <= low:
                raise forms.ValidationError(f"Line {number}: starting points must ascend ({low:g} then {high:g}).")
        ends = [*starts[1:], None]
        bracketings.append([Bracket(low, high) for low, high in zip(starts, ends, strict=True)])
    if len(bracketings) < 2:
        raise forms.ValidationError("Give at least two bracketings, one per line.")
    return bracketings


class BoundaryForm(forms.Form):
    field = forms.ChoiceField(initial="company.employee_count", help_text="A number field")
    bracketings = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 40}),
        initial="1, 50, 250\n1, 100, 500",
        help_text="One bracketing per line, as the brackets' starting points: 1, 50, 250 is 1–49 / 50–249 / 250+",
    )
    outcome = forms.ChoiceField(choices=OUTCOME_CHOICES, initial="converted")
    days = forms.IntegerField(min_value=1, max_value=1096, initial=90, help_text="Outcomes over the last N days")
    campaign = forms.CharField(max_length=100, required=False, help_text="For 'responded': only this campaign")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["field"]
        assert isinstance(field, forms.ChoiceField)  # declared above
        field.choices = sorted((f.path, f"{f.label} ({f.path})") for f in get_fields().values() if f.type == "number")

    def clean_bracketings(self) -> list[list[Bracket]]:
        return read_bracketings(self.cleaned_data["bracketings"])


def boundary_page(request: HttpRequest) -> HttpResponse:
    """Admin-wrapped (staff) in segments/admin.py; reading needs view permission on segments."""
    if not request.user.has_perm("segments.view_segment"):
        return HttpResponse(status=403)
    data = request.POST if request.method == "POST" else (request.GET if "field" in request.GET else None)
    form = BoundaryForm(data)
    ctx = {**admin.site.each_context(request), "title": "Segment boundary test", "opts": Segment._meta, "form": form}
    if form.is_valid():
        chosen = form.cleaned_data
        if request.method == "POST" and "create" in request.POST:
            return _create(request, chosen)
        try:
            ctx["report"] = boundary_test(
                chosen["field"],
                chosen["bracketings"],
                outcome=chosen["outcome"],
                days=chosen["days"],
                campaign=chosen["campaign"],
            )
        except BadInput as error:
            form.add_error(None, str(error))
    return TemplateResponse(request, "admin/segments/boundaries.html", ctx)


def _create(request: HttpRequest, data: dict) -> HttpResponse:
    if not request.user.has_perm("segments.add_segment"):
        return HttpResponse(status=403)
    choice = request.POST["create"]
    report_brackets = data["bracketings"]
    if choice == "suggested":
        report = boundary_test(data["field"], report_brackets, outcome=data["outcome"], days=data["days"])
        brackets = report.suggested
    elif choice.isdigit() and int(choice) < len(report_brackets):
        brackets = report_brackets[int(choice)]
    else:
        messages.error(request, f"No bracketing {choice!r} to turn into segments.")
        return HttpResponseRedirect(reverse("admin:segments_boundaries"))
    prefix = (request.POST.get("prefix") or "Size").strip()[:60]
    created = create_bracket_segments(data["field"], brackets, prefix=prefix, user=request.user)
    names = ", ".join(s.name for s in created)
    messages.success(request, f"Created {len(created)} segments (their first build is queued): {names}.")
    return HttpResponseRedirect(reverse("admin:segments_segment_changelist"))


class DimensionForm(forms.Form):
    schemes = forms.MultipleChoiceField(
        choices=list(SCHEMES.items()), widget=forms.CheckboxSelectMultiple, initial=["firmographic", "behavioral"]
    )
    segments = forms.ModelMultipleChoiceField(
        queryset=Segment.objects.exclude(status=SegmentStatus.ARCHIVED).order_by("name"),
        required=False,
        help_text="For 'The chosen segments': a contact counts in the first of these it belongs to",
    )
    outcome = forms.ChoiceField(choices=OUTCOME_CHOICES, initial="converted")
    days = forms.IntegerField(min_value=1, max_value=1096, initial=90)
    campaign = forms.CharField(max_length=100, required=False, help_text="For 'responded': only this campaign")


def dimension_page(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("segments.view_segment"):
        return HttpResponse(status=403)
    form = DimensionForm(request.GET if "schemes" in request.GET else None)
    ctx = {**admin.site.each_context(request), "title": "Segmentation dimensions compared", "opts": Segment._meta}
    ctx["form"] = form
    if form.is_valid():
        data = form.cleaned_data
        try:
            ctx["report"] = compare_dimensions(
                data["schemes"],
                outcome=data["outcome"],
                days=data["days"],
                campaign=data["campaign"],
                segments=list(data["segments"]),
            )
        except BadInput as error:
            form.add_error(None, str(error))
    return TemplateResponse(request, "admin/segments/dimensions.html", ctx)
