"""Score contacts with a model's active version and store what rules read.

Per contact in the model's population: the calibrated probability, its percentile (100 x the
share of scored contacts whose probability is at most this one) and a tier by percentile quartile
(above 75: very high, above 50: high, above 25: medium, else low). Contacts outside the
population (customers, for `convert`) have no score, so every condition on it is false for them.

A full run (daily) takes the behavioural measures of the last full metrics run when they are
current (predictions/stored_measures.py) and scores those contacts as of that run, the others as
of now; otherwise everyone as of now, recomputing the measures. Each score's `scored_at` is the
time its features are as of, and the run says where its measures came from (ScoreSummary.measures,
the task's result, the log). It replaces the model's scores in one transaction (PostgreSQL: staged,
then updated in place, see _replace_all; SQLite: delete and bulk inserts); a run for some contacts
(after writes) recomputes theirs as of now and ranks them against the stored scores. Segments
reading `metrics.*` hear of it through contacts.changes.metrics_changed.

The version that scores is the active one; if its stored model is refused on load (changed since
training), it is marked failed and the newest earlier version that loads takes its place.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

import numpy as np
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from contacts.changes import metrics_changed
from contacts.metrics.dialect import Dialect
from contacts.models import Contact
from predictions import artifacts
from predictions.encoding import encode
from predictions.features import read_features
from predictions.models import ModelVersion, PropensityModel, PropensityScore, Tier, VersionState
from predictions.stored_measures import RECOMPUTE_AT_MOST, MeasuresSource, measures_source
from predictions.targets import in_population

CHUNK_ROWS = 100_000
logger = logging.getLogger(__name__)
COLUMNS = ["model_id", "contact_id", "version_id", "probability", "percentile", "tier", "scored_at"]


class NoUsableVersion(LookupError):
    """The model has no trained version whose stored model loads."""


@dataclass(frozen=True)
class ScoreSummary:
    model: str
    version: int
    contacts: int
    duration_ms: int
    fallback_from: int | None = None
    measures: str = ""  # where the behavioural measures came from (stored or recomputed, and why)


# A percentile above each floor is in its tier (the quartiles), else low; tier_of and the SQL of
# _rank read the same table.
TIER_FLOORS = ((75, Tier.VERY_HIGH), (50, Tier.HIGH), (25, Tier.MEDIUM))


def tier_of(percentile: float) -> str:
    return next((tier for floor, tier in TIER_FLOORS if percentile > floor), Tier.LOW)


def tiers_of(percentiles: np.ndarray) -> list[str]:
    """tier_of each percentile, at once."""
    floors = [percentiles > floor for floor, _tier in TIER_FLOORS]
    return np.select(floors, [str(tier) for _floor, tier in TIER_FLOORS], default=str(Tier.LOW)).tolist()


def _tier_sql(percentile: str) -> str:
    branches = " ".join(f"WHEN {percentile} > {floor} THEN '{tier}'" for floor, tier in TIER_FLOORS)
    return f"CASE {branches} ELSE '{Tier.LOW}' END"


def usable_version(model: PropensityModel) -> tuple[ModelVersion, object, int | None]:
    """(version, fitted model, number of the active version refused on load or None)."""
    refused = None
    active = model.versions.filter(is_active=True).first()
    candidates = [active] if active else []
    candidates += list(
        model.versions.filter(state=VersionState.RETIRED, artifact__isnull=False).exclude(artifact_signature="")
    )
    for version in candidates:
        try:
            return version, artifacts.load(version.artifact, version.artifact_signature), refused
        except artifacts.ArtifactRefused as refusal:
            if version.is_active:
                refused = version.number
                _refuse(version, str(refusal))
    raise NoUsableVersion(f"Model {model.name!r} has no trained version that loads; train it first.")


def _refuse(version: ModelVersion, reason: str) -> None:
    """The active version's model no longer loads: retire it, activate the newest one that does."""
    ModelVersion.objects.filter(pk=version.pk).update(
        is_active=False, state=VersionState.FAILED, message=f"Refused on load: {reason}"
    )


def probabilities(fitted, columns: list[dict], raw) -> np.ndarray:
    """Calibrated probabilities for every contact of `raw`, encoded a chunk at a time."""
    out = np.empty(len(raw), dtype=np.float64)
    for start in range(0, len(raw), CHUNK_ROWS):
        rows = np.arange(start, min(start + CHUNK_ROWS, len(raw)))
        out[rows] = fitted.predict_proba(encode(raw.take(rows), columns))[:, 1]
    return out


@dataclass(frozen=True)
class Scored:
    """Probabilities of some contacts, from their features as of `as_of`."""

    contact_ids: np.ndarray
    p: np.ndarray
    as_of: datetime


def _scored(model: PropensityModel, fitted, columns: list[dict], raw) -> Scored:
    raw = raw.take(np.flatnonzero(in_population(model, raw)))
    return Scored(raw.contact_ids, probabilities(fitted, columns, raw), raw.as_of)


def score_parts(
    model: PropensityModel, version: ModelVersion, fitted, *, now: datetime, contact_ids: list[int] | None
) -> tuple[list[Scored], str]:
    """The population's probabilities, in parts by the time their features are as of, and where
    the behavioural measures came from. A full scoring reads them from the last full metrics run
    when they are current (predictions/stored_measures.py): those contacts as of that run, the
    others recomputed as of now."""
    columns, volatile = version.features["columns"], version.features.get("volatile", [])
    if contact_ids is not None:
        raw = read_features(as_of=now, volatile=volatile, contact_ids=contact_ids)
        return [_scored(model, fitted, columns, raw)], "recomputed as of now (contacts changed by writes)"
    source = measures_source(now=now)
    if source.stored is not None:
        stored = read_features(as_of=source.stored.as_of, volatile=volatile, stored=source.stored)
        everyone = Contact.objects.count()
        rest = np.zeros(0, dtype=np.int64)
        if everyone != len(stored):  # the stored ones are contacts: the same number, the same contacts
            every_id = np.fromiter(Contact.objects.values_list("id", flat=True), dtype=np.int64)
            rest = np.setdiff1d(every_id, stored.contact_ids, assume_unique=True)
        if len(rest) <= RECOMPUTE_AT_MOST * everyone:
            parts = [_scored(model, fitted, columns, stored)]
            del stored
            if len(rest):
                raw = read_features(as_of=now, volatile=volatile, contact_ids=rest.tolist())
                parts.append(_scored(model, fitted, columns, raw))
            reason = f"{source.reason} for {everyone - len(rest):,} contacts; {len(rest):,} recomputed as of now"
            return parts, reason
        del stored
        source = MeasuresSource(None, f"recomputed: {len(rest):,} of {everyone:,} contacts changed since then")
    raw = read_features(as_of=now, volatile=volatile)
    return [_scored(model, fitted, columns, raw)], f"{source.reason}; as of now"


def score_model(
    model: PropensityModel, *, now: datetime | None = None, contact_ids: list[int] | None = None
) -> ScoreSummary:
    started = time.monotonic()
    now = now or timezone.now()
    version, fitted, refused = usable_version(model)
    if refused is not None:
        with transaction.atomic():
            ModelVersion.objects.filter(pk=version.pk).update(is_active=True, state=VersionState.ACTIVE)
        version.is_active = True
    parts, measures = score_parts(model, version, fitted, now=now, contact_ids=contact_ids)
    logger.info("Scoring %s v%s: measures %s", model.name, version.number, measures)
    scored = sum(len(part.p) for part in parts)
    with transaction.atomic():
        if contact_ids is None:
            p = np.concatenate([part.p for part in parts])
            percentiles = 100.0 * np.searchsorted(np.sort(p), p, side="right") / max(len(p), 1)
            _replace_all(model, version, parts, percentiles)
        else:
            (part,) = parts
            PropensityScore.objects.filter(model=model, contact_id__in=contact_ids).delete()
            _insert(model, version, part.contact_ids, part.p, np.zeros(len(part.p)), part.as_of)
            _rank(model, list(map(int, part.contact_ids)))
        count = scored if contact_ids is None else model.scores.count()
        ModelVersion.objects.filter(pk=version.pk).update(scored_at=now, scored_contacts=count)
        metrics_changed(None if contact_ids is None else list(contact_ids))
    return ScoreSummary(
        model=model.name,
        version=version.number,
        contacts=scored,
        duration_ms=round((time.monotonic() - started) * 1000),
        fallback_from=refused,
        measures=measures,
    )


def _rows(model, version, contact_ids, p, percentiles, now):
    for contact_id, probability, percentile in zip(contact_ids.tolist(), p.tolist(), percentiles.tolist(), strict=True):
        yield (model.pk, contact_id, version.pk, probability, percentile, tier_of(percentile), now)


def _copy_text(model, version, contact_ids, p, percentiles, now: datetime):
    """The rows in COPY's text format, CHUNK_ROWS at a time: formatted here in one f-string per
    row (floats as their shortest exact repr), since psycopg's write_row adapts each value on its
    own (28 s of 733k rows at 1M contacts, load ~5)."""
    stamp, model_id, version_id = now.isoformat(), model.pk, version.pk
    rows = zip(contact_ids.tolist(), p.tolist(), percentiles.tolist(), tiers_of(percentiles), strict=True)
    while chunk := list(islice(rows, CHUNK_ROWS)):
        yield "".join(
            f"{model_id}\t{contact_id}\t{version_id}\t{probability!r}\t{percentile!r}\t{tier}\t{stamp}\n"
            for contact_id, probability, percentile, tier in chunk
        )


STAGED = "predictions_staged_scores"


def _replace_all(model: PropensityModel, version: ModelVersion, parts: list[Scored], percentiles: np.ndarray) -> None:
    """Replace every stored score of `model` with the scored `parts` (percentiles in their order).

    PostgreSQL: the scores are copied into a temporary table, then the stored rows are updated in
    place, those of contacts no longer scored deleted and those of new contacts inserted. A deleted
    and re-inserted row had its three foreign keys checked at commit, each check locking the
    contact's row (FOR KEY SHARE: a write to every contact's page); an update that keeps them is not
    checked. 73k scores at 100k contacts (load ~5-7): delete + COPY + checks ~12 s, staged ~9 s."""
    offsets = np.cumsum([0, *(len(part.p) for part in parts)])
    chunks = [(part, percentiles[offsets[i] : offsets[i + 1]]) for i, part in enumerate(parts)]
    if connection.vendor != "postgresql":
        PropensityScore.objects.filter(model=model).delete()
        for part, placed in chunks:
            _insert(model, version, part.contact_ids, part.p, placed, part.as_of)
        return
    table, columns, params = PropensityScore._meta.db_table, ", ".join(COLUMNS), {"model": model.pk}
    assignments = ", ".join(f"{column} = t.{column}" for column in COLUMNS if column not in ("model_id", "contact_id"))
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {STAGED} ON COMMIT DROP AS SELECT {columns} FROM {table} WITH NO DATA")
        for part, placed in chunks:
            _insert(model, version, part.contact_ids, part.p, placed, part.as_of, table=STAGED)
        cursor.execute(f"ANALYZE {STAGED}")
        cursor.execute(
            f"UPDATE {table} s SET {assignments} FROM {STAGED} t"
            " WHERE s.model_id = %(model)s AND s.contact_id = t.contact_id",
            params,
        )
        cursor.execute(
            f"DELETE FROM {table} s WHERE s.model_id = %(model)s"
            f" AND NOT EXISTS (SELECT 1 FROM {STAGED} t WHERE t.contact_id = s.contact_id)",
            params,
        )
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {STAGED} t"
            f" WHERE NOT EXISTS (SELECT 1 FROM {table} s WHERE s.model_id = %(model)s AND s.contact_id = t.contact_id)",
            params,
        )
        cursor.execute(f"DROP TABLE {STAGED}")


def _insert(
    model,
    version,
    contact_ids: np.ndarray,
    p: np.ndarray,
    percentiles: np.ndarray,
    now: datetime,
    *,
    table: str = PropensityScore._meta.db_table,
) -> None:
    if connection.vendor == "postgresql":
        statement = f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN"
        with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
            for text in _copy_text(model, version, contact_ids, p, percentiles, now):
                copy.write(text)
        return
    rows = _rows(model, version, contact_ids, p, percentiles, now)
    batch = []
    for row in rows:
        batch.append(PropensityScore(**dict(zip(COLUMNS, row, strict=True))))
        if len(batch) == 5_000:
            PropensityScore.objects.bulk_create(batch)
            batch = []
    PropensityScore.objects.bulk_create(batch)


# Up to this many fresh scores, each counts the stored scores at or below it through the (model,
# probability) index; past it, one ordered pass over all of the model's scores counts for everyone.
RANK_BY_PROBE_UP_TO = 4


def _rank(model: PropensityModel, contact_ids: list[int]) -> None:
    """Percentile and tier of these contacts' fresh scores among all of the model's stored scores,
    in one statement: a probe of the index per contact for a few, one window count over the
    model's scores for more (a count per contact walked half the index each: O(contacts x scores))."""
    if not contact_ids:
        return
    table = PropensityScore._meta.db_table
    d = Dialect(connection.vendor)
    params: dict[str, int | str] = {"model": model.pk, "ids": json.dumps(sorted({int(i) for i in contact_ids}))}
    with connection.cursor() as cursor:
        if d.postgres:
            # The counts' estimates look vast to the planner, which then spent ~0.9 s on JIT
            # for a statement of ~1 ms (one contact, 100k scores). Inside score_model's transaction.
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE model_id = %(model)s", params)
        params["total"] = max(cursor.fetchone()[0], 1)
        percentile = "CAST(100 AS DOUBLE PRECISION) * at_most / %(total)s"
        if len(contact_ids) <= RANK_BY_PROBE_UP_TO:
            ranked = f"""
                SELECT s.contact_id, (SELECT COUNT(*) FROM {table} o
                    WHERE o.model_id = %(model)s AND o.probability <= s.probability) AS at_most
                FROM {table} s WHERE s.model_id = %(model)s AND {d.id_in("s.contact_id")}"""
        else:
            ranked = f"""
                SELECT contact_id, at_most FROM (
                    SELECT contact_id, COUNT(*) OVER (ORDER BY probability) AS at_most
                    FROM {table} WHERE model_id = %(model)s
                ) every_score WHERE {d.id_in("contact_id")}"""
        cursor.execute(
            # Materialised: each fresh score is counted once, not once per use of its percentile.
            f"""WITH ranked AS MATERIALIZED ({ranked}),
            placed AS (SELECT contact_id, {percentile} AS percentile FROM ranked)
            UPDATE {table} SET percentile = placed.percentile, tier = {_tier_sql("placed.percentile")}
            FROM placed WHERE {table}.model_id = %(model)s AND {table}.contact_id = placed.contact_id""",
            params,
        )


def scored_models() -> list[PropensityModel]:
    """Models with an active version (the daily scoring runs them)."""
    return list(PropensityModel.objects.filter(Q(versions__is_active=True)).distinct())
