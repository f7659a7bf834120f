"""Operations pages for segment analytics: the comparison of all active segments (and its CSV),
one segment's analytics, and the overlap heat map. Each reads stored rollups in a fixed number of
queries; bad parameters get the form back with a 400 naming the parameter."""

from __future__ import annotations

import csv
from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from crmseg_site.access import staff_required
from crmseg_site.replicas import replica_reads
from segments.analytics import overlap as overlaps
from segments.analytics.channels import CHANNEL_LABELS, CHANNELS, CONVERSION_STAGES, FUNNEL
from segments.analytics.measures import (
    campaign_response,
    compare_segments,
    day_sizes,
    measure_series,
    segment_measures,
)
from segments.analytics.periods import BadParameter, last_full_quarter, local_midnight
from segments.analytics.reports import (
    SORTS,
    comparison_csv_rows,
    read_channel,
    read_period,
    read_sort,
    read_stage,
    sorted_rows,
)
from segments.models import AnalyticsGrain, RefreshFailure, RuleVersion, Segment, SegmentChangeStat

from .analytics_charts import Mark, Row, forest, heat_map, series, size_with_marks

HEADLINES = [
    ("engagement", "Engagement rate", "%", "Share of members with an open, click, visit, download or form"),
    ("conversion", "Conversion rate", "%", "Members who converted, per average member"),
    ("revenue_per_contact", "Revenue per contact", "$", "Won deals + purchases, per average member"),
]


def _form_error(request: HttpRequest, template: str, error: BadParameter, ctx: dict) -> HttpResponse:
    ctx = {**ctx, "error": str(error), "error_parameter": error.parameter}
    return render(request, template, ctx, status=400)


def _inputs(request: HttpRequest):
    read_channel(request.GET.get("channel"))  # refused here when unknown; the matrix shows it alone
    return (
        read_period(request.GET.get("period")),
        read_stage(request.GET.get("stage")),
        read_sort(request.GET.get("sort")),
    )


def _base_ctx(request: HttpRequest) -> dict:
    return {
        "section": "segments",
        "stages": CONVERSION_STAGES,
        "default_period": last_full_quarter(timezone.localdate()).label,
        "period_text": request.GET.get("period", ""),
        "stage_value": request.GET.get("stage", ""),
    }


@staff_required
@replica_reads()
def comparison_page(request: HttpRequest) -> HttpResponse:
    ctx = _base_ctx(request)
    try:
        period, stage, sort = _inputs(request)
    except BadParameter as error:
        return _form_error(request, "segments/analytics/compare.html", error, ctx)
    comparison = compare_segments(period, stage=stage)
    rows = sorted_rows(comparison, sort)
    charts = [
        {
            "title": title,
            "note": note,
            "svg": forest(
                [Row(m.name, getattr(m, name), m.flags.get(name, "")) for m in rows],
                getattr(comparison.baseline, name),
                label=f"{title} by segment, {period.label}, with 95% intervals",
                unit=unit,
                axis=f"{title} ({'share of members' if unit == '%' else 'per average member'}), 95% interval",
            ),
        }
        for name, title, unit, note in HEADLINES
    ]
    ctx.update(
        {
            "comparison": comparison,
            "period": period,
            "stage": stage,
            "rows": rows,
            "sort": sort,
            "sorts": list(SORTS),
            "charts": charts,
            "channels": [
                (key, CHANNEL_LABELS[key])
                for key in CHANNELS
                if read_channel(request.GET.get("channel")) in (None, key)
            ],
            "query": request.GET.urlencode(),
        }
    )
    return render(request, "segments/analytics/compare.html", ctx)


@staff_required
@replica_reads()
def comparison_csv(request: HttpRequest) -> HttpResponse:
    try:
        period, stage, sort = _inputs(request)
    except BadParameter as error:
        return HttpResponse(f"{error}\n", status=400, content_type="text/plain; charset=utf-8")
    comparison = compare_segments(period, stage=stage)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="segment-comparison-{period.label}.csv"'
    csv.writer(response).writerows(comparison_csv_rows(comparison, sort=sort))
    return response


SERIES_GRAINS: dict[str, int] = {AnalyticsGrain.WEEK: 26, AnalyticsGrain.MONTH: 12, AnalyticsGrain.QUARTER: 8}


def _marks(segment: Segment, first, last) -> list[Mark]:
    """Rule edits, refresh failures and days with members added or removed by hand or import."""
    start = local_midnight(first)
    marks = [
        Mark(timezone.localdate(v.changed_at), "rule", "rule edited")
        for v in RuleVersion.objects.filter(segment=segment, changed_at__gte=start)
    ]
    marks += [
        Mark(timezone.localdate(f.failed_at), "failure", f"refresh failed: {f.error[:80]}")
        for f in RefreshFailure.objects.filter(segment=segment, failed_at__gte=start)[:50]
    ]
    manual = SegmentChangeStat.objects.filter(
        segment=segment, grain=AnalyticsGrain.DAY, period_start__gte=first, period_start__lte=last, reason="manual"
    )
    by_day: dict = {}
    for row in manual:
        by_day[row.period_start] = by_day.get(row.period_start, 0) + row.n
    marks += [Mark(day, "import", f"{n:,} added or removed by hand or import") for day, n in sorted(by_day.items())]
    return marks


@staff_required
@replica_reads()
def segment_analytics(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = get_object_or_404(Segment.objects.select_related("parent"), pk=segment_id)
    ctx = {**_base_ctx(request), "segment": segment, "grains": list(SERIES_GRAINS)}
    try:
        period, stage, _ = _inputs(request)
        grain = request.GET.get("grain") or AnalyticsGrain.MONTH
        if grain not in SERIES_GRAINS:
            raise BadParameter(f"grain: {grain!r} is not one of {', '.join(SERIES_GRAINS)}.", parameter="grain")
    except BadParameter as error:
        return _form_error(request, "segments/analytics/segment.html", error, ctx)
    measures = segment_measures(segment, period, stage=stage)
    parent = segment_measures(segment.parent, period, stage=stage) if segment.parent else None
    baseline = segment_measures(None, period, stage=stage)
    count = SERIES_GRAINS[grain]
    first = period.first
    for _ in range(count - 1):
        first = (
            (first - timedelta(days=1)).replace(day=1) if grain != AnalyticsGrain.WEEK else first - timedelta(days=7)
        )
    if grain == AnalyticsGrain.QUARTER:
        first = period.first.replace(year=period.first.year - 2)
    history = measure_series(segment, grain, first, period.last)
    labels = [m.period.label for m in history]
    series_charts = [
        {
            "title": title,
            "svg": series(
                labels,
                [getattr(m, name) for m in history],
                label=f"{title} of {segment.name} per {grain}, with 95% intervals",
                unit=unit,
                y_label=f"{title} ({unit if unit == '%' else 'per member'})",
            ),
        }
        for name, title, unit, _ in HEADLINES
    ]
    size_days, size_values = day_sizes(segment, period)
    ctx.update(
        {
            "period": period,
            "stage": stage,
            "grain": grain,
            "m": measures,
            "parent": parent,
            "baseline": baseline,
            "series_charts": series_charts,
            "history": history,
            "size_days": len(size_days),
            "size_last": size_days[-1],
            "size_chart": size_with_marks(
                size_days,
                size_values,
                _marks(segment, size_days[0], size_days[-1]),
                label=f"Members of {segment.name} per day, with rule edits, imports and failed refreshes",
            ),
            "reasons": sorted(set(measures.joins) | set(measures.leaves)),
            "channels": [
                (key, CHANNEL_LABELS[key], measures.channels.get(key), baseline.channels.get(key)) for key in CHANNELS
            ],
            "campaigns": campaign_response(segment, period)[:15],
            "funnel": [(stage_name, measures.stage_moves.get(stage_name)) for stage_name in FUNNEL[1:]],
        }
    )
    return render(request, "segments/analytics/segment.html", ctx)


@staff_required
@replica_reads()
def overlap_page(request: HttpRequest) -> HttpResponse:
    everything = list(Segment.objects.active().order_by("name"))
    ctx: dict[str, object] = {"section": "segments", "all_segments": everything}
    chosen_ids = request.GET.getlist("segments")
    try:
        ids = [int(pk) for pk in chosen_ids]
    except ValueError:
        bad = next(pk for pk in chosen_ids if not pk.strip().isdigit())
        return _form_error(
            request,
            "segments/analytics/overlap.html",
            BadParameter(f"segments: {bad!r} is not a segment id.", parameter="segments"),
            ctx,
        )
    by_id = {s.pk: s for s in everything}
    unknown = [pk for pk in ids if pk not in by_id]
    if unknown:
        error = BadParameter(f"segments: no active segment with id {unknown[0]}.", parameter="segments")
        return _form_error(request, "segments/analytics/overlap.html", error, ctx)
    chosen = [by_id[pk] for pk in dict.fromkeys(ids)] or everything[:10]
    try:
        result = overlaps.overlap(chosen)
    except BadParameter as error:
        return _form_error(request, "segments/analytics/overlap.html", error, ctx)
    names = [s.name for s in result.segments]
    ctx.update(
        {
            "result": result,
            "chosen_ids": {s.pk for s in result.segments},
            "chart": heat_map(names, result.matrix, result.shared, label="Jaccard overlap of the chosen segments"),
            "pairs": sorted(result.pairs(), key=lambda pair: -(pair[3] or 0))[:20],
            "max_segments": overlaps.MAX_SEGMENTS,
        }
    )
    return render(request, "segments/analytics/overlap.html", ctx)
