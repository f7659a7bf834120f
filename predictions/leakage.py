"""The leakage check: features that know the outcome.

On the training contacts (a sample of at most SAMPLE), a feature source is flagged
- when one of its columns alone separates the outcome too well: AUC (or 1 - AUC) above MAX_AUC;
- when it is set mostly for contacts that had the outcome (set for FILL_GAP more of them, in
  share, than of those without): a value with no history that was most likely filled in after
  the outcome (a lifetime value, a "closed reason" property);
- when the contacts it is set for nearly all had the outcome at some time between the cutoff and
  now (at least SET_THEN_OUTCOME of them, and OUTCOME_GAP more than of those without it): filled
  in once the outcome happened, even if that was after the training horizon (a satisfaction
  score asked only of customers).
Flagged sources are left out of the model and listed on the model page with the reason.
"""

from __future__ import annotations

import numpy as np

from predictions.encoding import encode, fit_encoder, label_of
from predictions.evaluation import weighted_auc
from predictions.features import RawFeatures

MAX_AUC = 0.95
FILL_GAP = 0.6
SET_THEN_OUTCOME = 0.9
OUTCOME_GAP = 0.5
MIN_SET = 20
SAMPLE = 200_000


def leakage_flags(
    raw: RawFeatures, y: np.ndarray, *, eventually: np.ndarray | None = None, seed: int = 0
) -> list[dict]:
    """`y`: the outcome in the training horizon; `eventually`: the outcome at any time up to now."""
    eventually = y if eventually is None else eventually
    if len(raw) > SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(len(raw), SAMPLE, replace=False))
        raw, y, eventually = raw.take(rows), y[rows], eventually[rows]
    columns = fit_encoder(raw)
    matrix = encode(raw, columns)
    flags: dict[str, dict] = {}
    for j, column in enumerate(columns):
        auc = weighted_auc(y, matrix[:, j])
        strength = max(auc, 1 - auc)
        source = column["source"]
        if strength > MAX_AUC and strength > flags.get(source, {}).get("auc", 0):
            flags[source] = {
                "feature": source,
                "label": label_of(source),
                "auc": round(float(strength), 4),
                "reason": f"alone it separates the outcome with AUC {strength:.3f} (above {MAX_AUC})",
            }
    for source, present in _presence(raw):
        _fill_gap(flags, source, present, y)
        _set_then_outcome(flags, source, present, eventually)
    return sorted(flags.values(), key=lambda flag: flag["feature"])


def _presence(raw: RawFeatures):
    for source, values in raw.numbers.items():
        yield source, ~np.isnan(values)
    for source, (codes, _vocabulary) in raw.categories.items():
        yield source, codes >= 0
    for source, (tag_rows, _codes, _vocabulary) in raw.tags.items():
        present = np.zeros(len(raw), dtype=bool)
        present[tag_rows] = True
        yield source, present


def _set_then_outcome(flags: dict[str, dict], source: str, present: np.ndarray, eventually: np.ndarray) -> None:
    if source in flags or present.sum() < MIN_SET or present.all():
        return
    when_set, when_unset = float(eventually[present].mean()), float(eventually[~present].mean())
    if when_set >= SET_THEN_OUTCOME and when_set - when_unset >= OUTCOME_GAP:
        flags[source] = {
            "feature": source,
            "label": label_of(source),
            "auc": None,
            "reason": (
                f"{when_set:.0%} of the contacts it is set for had the outcome by now (of the others "
                f"{when_unset:.0%}): most likely filled in once the outcome happened"
            ),
        }


def _fill_gap(flags: dict[str, dict], source: str, present: np.ndarray, y: np.ndarray) -> None:
    positives, negatives = present[y == 1], present[y == 0]
    if source in flags or not positives.size or not negatives.size:
        return
    with_outcome, without = float(positives.mean()), float(negatives.mean())
    if with_outcome - without >= FILL_GAP:
        flags[source] = {
            "feature": source,
            "label": label_of(source),
            "auc": None,
            "reason": (
                f"set for {with_outcome:.0%} of contacts with the outcome and {without:.0%} of the others:"
                " most likely filled in after the outcome"
            ),
        }
