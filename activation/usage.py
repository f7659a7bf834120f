"""How activation uses segments, for the segments overview's "last used" (segments/governance/usage.py).

A segment is used by an export run that finished (as the activation's segment, or as one of its
suppression segments) and by an automation that acted on one of its member changes. Read for any
number of segments in three statements: exports grouped by segment, suppressions grouped by
segment, and each automation's latest run found through its (automation, change) index.
"""

from __future__ import annotations

from django.db.models import Max, OuterRef, Subquery

from activation.automation_models import Automation, AutomationRun
from activation.models import ExportRun
from segments.governance.usage import LastUse


def last_uses(segment_ids: list[int]) -> dict[int, LastUse]:
    found: dict[int, LastUse] = {}

    def keep(segment_id: int, use: LastUse) -> None:
        if segment_id not in found or use.at > found[segment_id].at:
            found[segment_id] = use

    finished = ExportRun.objects.filter(finished_at__isnull=False).order_by()
    for key in ("activation__segment_id", "activation__suppression_segments"):
        rows = finished.filter(**{f"{key}__in": segment_ids}).values_list(key).annotate(at=Max("finished_at"))
        for segment_id, at in rows:
            keep(segment_id, LastUse(at, "export"))
    latest = AutomationRun.objects.filter(automation=OuterRef("pk")).order_by("-change_id")
    automations = (
        Automation.objects.filter(trigger_segment_id__in=segment_ids)
        .annotate(at=Subquery(latest.values("change__changed_at")[:1]))
        .filter(at__isnull=False)
        .values_list("trigger_segment_id", "at")
    )
    for segment_id, at in automations:
        keep(segment_id, LastUse(at, "automation"))
    return found
