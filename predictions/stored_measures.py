"""When the daily scoring may read the behavioural measures the metrics runs stored, instead of
recomputing every contact's over the whole activity stream (~51 CPU-seconds of the server at 1M
contacts / 10M activities).

A contact's stored measures are its ContactMetrics row, computed as of the row's `as_of`. Read as of
that time they equal what recomputing as of it gives, so the scoring scores those contacts as of
the metrics run, not as of now (their scores say so in `scored_at`, and their explanations recompute
the features as of it). They are current when:

- the latest full metrics run (the nightly one) is at most PREDICTIONS_STORED_MEASURES_MAX_HOURS
  old and not later than the scoring's `now`;
- it used the active scoring model's current version (weights and half-life change the measures);
- it recorded its activity watermark (runs before migration contacts 0026 did not);
- metrics are recomputed after writes (METRICS_RECOMPUTE_ON_WRITE): otherwise a contact whose
  activities were edited or deleted after the run keeps a stale row that nothing shows.

Then the contacts read from the store are those whose row is still the run's (as of its `as_of`: a
touched-contact run after writes moves the row to its own time), with no activity above the
run's watermark and no change waiting for the catch-up (contacts.changes). Every other contact
(created, written or caught up since) is recomputed as of now; when they are more than
RECOMPUTE_AT_MOST of the contacts, everyone is recomputed as of now, as is every scoring for some
contacts (after writes).

Not seen: an activity written by a transaction that was still open when the run began, with an id
under the watermark, whose writer did not announce the contact (contacts.changes) — every write
path of the project announces its contacts in the writing transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from contacts.models import MetricsRun, ScoringModel
from predictions.features import StoredMeasures

# Past this share of the contacts to recompute, recomputing everyone costs about as much.
RECOMPUTE_AT_MOST = 0.2


@dataclass(frozen=True)
class MeasuresSource:
    """Where a full scoring takes its behavioural measures from, and why."""

    stored: StoredMeasures | None
    reason: str


def measures_source(*, now: datetime) -> MeasuresSource:
    """The stored measures a full scoring as of `now` may read (`stored`), or None and why not."""
    hours = settings.PREDICTIONS_STORED_MEASURES_MAX_HOURS
    if not hours:
        return MeasuresSource(None, "recomputed: PREDICTIONS_STORED_MEASURES_MAX_HOURS is 0")
    if not settings.METRICS_RECOMPUTE_ON_WRITE:
        return MeasuresSource(None, "recomputed: metrics are not recomputed after writes (METRICS_RECOMPUTE_ON_WRITE)")
    run = MetricsRun.objects.filter(full=True).order_by("-as_of", "-id").first()
    if run is None:
        return MeasuresSource(None, "recomputed: no full metrics run yet")
    when = f"the metrics run as of {run.as_of:%Y-%m-%d %H:%M}"
    if run.as_of > now or run.as_of < now - timedelta(hours=hours):
        return MeasuresSource(None, f"recomputed: {when} is not within {hours} hours before the scoring")
    version = ScoringModel.objects.get_active().current_version
    if version is None or run.scoring_version_id != version.pk:
        return MeasuresSource(None, f"recomputed: the scoring model changed since {when}")
    if run.last_activity_id is None:
        return MeasuresSource(None, f"recomputed: {when} recorded no activity watermark")
    return MeasuresSource(StoredMeasures(as_of=run.as_of, watermark=run.last_activity_id), f"stored as of {when}")
