"""Operations pages for segments: overview tree, segment page, refresh now with a status poll."""

import json
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from crmseg_site.access import staff_required
from crmseg_site.replicas import replica_reads
from predictions.explain import explain_contacts
from predictions.models import PropensityModel
from predictions.scoring import NoUsableVersion
from segments.governance.rule_history import VersionDiff, version_diffs
from segments.governance.usage import last_used
from segments.history import detail_text
from segments.models import DraftStatus, MembershipChange, RefreshStatus, RuleVersion, Segment
from segments.rules.registry import get_fields, propensity_models_named
from segments.rules.wording import rule_lines, segment_names
from segments.tasks import enqueue_refresh_segment

from .charts import diverging_bars, line_chart
from .paging import fetch_page, page_number, page_query
from .segment_page import (
    flatten,
    lineage,
    members,
    segment_histories,
    segment_history,
    segment_tree,
    where_used,
)

MEMBERS_PAGE_SIZE = 25
REVIEWS_SHOWN = 10
OVERVIEW_SORTS = {
    "name": lambda node: node.segment.name.lower(),
    "size": lambda node: node.segment.size,
    "growth7": lambda node: node.growth[7],
    "growth30": lambda node: node.growth[30],
    "refreshed": lambda node: node.segment.last_refreshed_at or datetime.min.replace(tzinfo=UTC),
    "used": lambda node: node.last_used.at if node.last_used else datetime.min.replace(tzinfo=UTC),
}


def _all_segments() -> list[Segment]:
    return list(Segment.objects.select_related("owner").order_by("name"))


@staff_required
@replica_reads()
def segment_overview(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    segments = _all_segments()
    histories = segment_histories(segments, now=now, span=31)
    roots = segment_tree(segments)
    rows = flatten(roots)
    used = last_used(segments)
    for node in rows:
        node.growth = histories[node.segment.pk].growth
        node.last_used = used.get(node.segment.pk)
    sort = request.GET.get("sort", "")
    descending = sort.startswith("-")
    key = OVERVIEW_SORTS.get(sort.lstrip("-"))
    if key:  # a sorted view is a flat list; unsorted keeps the tree
        rows = sorted(rows, key=key, reverse=descending)
        for node in rows:
            node.depth = 0
    ctx = {"section": "segments", "rows": rows, "sort": sort, "sorted": bool(key)}
    return render(request, "segments/overview.html", ctx)


def rule_diffs(segment: Segment, *, fields: dict) -> list[VersionDiff]:
    """The last ten rule versions, each as its rule before and after in words, side by side."""
    versions = RuleVersion.objects.filter(segment=segment).select_related("changed_by", "approved_by")
    return version_diffs(versions[:10], fields=fields)


LATEST_CHANGES = 10


def latest_changes(segment: Segment) -> list[dict]:
    """The last joins and leaves, each with its reason and the explainer's word when recorded."""
    rows = MembershipChange.objects.filter(segment=segment).select_related("contact", "changed_by")[:LATEST_CHANGES]
    return [{"change": change, "why": detail_text(change.detail)} for change in rows]


@staff_required
@replica_reads()
def segment_detail(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = get_object_or_404(Segment.objects.select_related("owner", "parent"), pk=segment_id)
    now = timezone.now()
    history = segment_history(segment, now=now)
    segments = _all_segments()
    subtree = next(node for node in flatten(segment_tree(segments)) if node.segment.pk == segment.pk)
    member_filter = members(segment, request.GET)
    number = page_number(request.GET)
    page = fetch_page(member_filter.qs, number=number, size=MEMBERS_PAGE_SIZE) if member_filter.is_valid() else None
    scored_by = member_likelihood(segment, page.rows if page else [])
    fields = get_fields()
    ctx = {
        "section": "segments",
        "segment": segment,
        "history": history,
        "size_chart": line_chart(
            history.days, history.sizes, label=f"Members of {segment.name} per day", y_label="Members"
        ),
        "changes_chart": diverging_bars(
            history.days, history.joins, history.leaves, label=f"Joins and leaves of {segment.name} per day"
        ),
        "lineage": lineage(segment, segments),
        "subtree": flatten(subtree.children, depth=1),
        "uses": where_used(segment),
        "filter": member_filter,
        "page": page,
        "next_query": page_query(request.GET, key="page", number=number + 1),
        "previous_query": page_query(request.GET, key="page", number=number - 1),
        "diffs": rule_diffs(segment, fields=fields),
        "latest_changes": latest_changes(segment),
        "rule_lines": rule_lines(segment.rule, fields=fields, segment_names=segment_names(segment.rule))
        if segment.rule is not None
        else [],
        "rule_json": json.dumps(segment.rule, indent=2) if segment.rule is not None else "",
        "refresh_note": refresh_note(segment),
        "saved_at": saved_at(request.GET.get("saved", "")),
        "scored_by": scored_by,
        "reviews": segment.reviews.select_related("reviewer")[:REVIEWS_SHOWN],
        "pending_drafts": segment.drafts.filter(status=DraftStatus.PENDING).select_related("author"),
    }
    return render(request, "segments/detail.html", ctx)


def saved_at(text: str) -> str:
    """The time of the save the admin redirected from (ISO), or '' when absent or not a time."""
    try:
        return datetime.fromisoformat(text).isoformat() if text else ""
    except ValueError:
        return ""


def member_likelihood(segment: Segment, rows: list) -> str | None:
    """For a segment whose rule reads a propensity score: each member row's score and main factor
    (`row.likelihood`), read for the whole page at once. Returns the model's name, or None."""
    named = propensity_models_named(segment.rule)
    model = PropensityModel.objects.filter(name__in=named[:1]).first()
    if model is None or not rows:
        return None
    try:
        explained = explain_contacts(model, [row.contact_id for row in rows], top=1)
    except NoUsableVersion:
        return None
    for row in rows:
        row.likelihood = explained.get(row.contact_id)
    return model.name


def refresh_state(segment: Segment) -> dict:
    return {
        "status": segment.last_refresh_status,
        "status_label": segment.get_last_refresh_status_display(),
        "running_since": segment.refresh_running_since.isoformat() if segment.refresh_running_since else None,
        "heartbeat_at": segment.refresh_heartbeat_at.isoformat() if segment.refresh_heartbeat_at else None,
        "worker": segment.refresh_worker,
        "failures": segment.refresh_failures,
        "retry_at": segment.refresh_retry_at.isoformat() if segment.refresh_retry_at else None,
        "note": refresh_note(segment),
        "refreshed_at": segment.last_refreshed_at.isoformat() if segment.last_refreshed_at else None,
        "size": segment.size,
        "duration_ms": segment.last_refresh_duration_ms,
        "added": segment.last_refresh_added,
        "removed": segment.last_refresh_removed,
        "error": segment.last_refresh_error,
    }


def refresh_note(segment: Segment) -> str:
    """The refresh running now, or what happens after a failure, in a sentence ('' when neither)."""
    if segment.refresh_running_since is not None:
        since, beat = (timezone.localtime(t) for t in (segment.refresh_running_since, segment.refresh_heartbeat_at))
        return f"Running since {since:%H:%M:%S} on {segment.refresh_worker}; last heartbeat {beat:%H:%M:%S}."
    if segment.last_refresh_status != RefreshStatus.FAILED:
        return ""
    times = "once" if segment.refresh_failures == 1 else f"{segment.refresh_failures} times in a row"
    if segment.refresh_retry_at is not None:
        return f"Failed {times}; tried again at {timezone.localtime(segment.refresh_retry_at):%H:%M:%S}."
    return f"Failed {times}; no more automatic retries, the next scheduled sweep tries again."


@require_POST
@staff_required
def segment_refresh(request: HttpRequest, segment_id: int) -> JsonResponse:
    segment = get_object_or_404(Segment, pk=segment_id)
    if not segment.is_rule_based:
        return JsonResponse({"queued": False, "message": "Static segments change by hand only."}, status=400)
    enqueue_refresh_segment(segment.pk)
    return JsonResponse({"queued": True, "requested_at": timezone.now().isoformat(), **refresh_state(segment)})


@staff_required
def segment_status(request: HttpRequest, segment_id: int) -> JsonResponse:
    return JsonResponse(refresh_state(get_object_or_404(Segment, pk=segment_id)))
