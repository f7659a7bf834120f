"""The leakage check: features that know the outcome.

On the training contacts (a sample of at most SAMPLE), a feature source is flagged
- when one of its columns alone separates the outcome too well: AUC (or 1 - AUC) above MAX_AUC;
- when it is set mostly for contacts that had the outcome (set for FILL_GAP more of them, in
  share, than of those without): a value with no history that was most likely filled in after
  the outcome (a lifetime value, a "closed reason" property).
Flagged sources are left out of the model and listed on the model page with the reason.
"""

from __future__ import annotations

import numpy as np

from predictions.encoding import encode, fit_encoder, label_of
from predictions.evaluation import weighted_auc
from predictions.features import RawFeatures

MAX_AUC = 0.95
FILL_GAP = 0.6
SAMPLE = 200_000


def leakage_flags(raw: RawFeatures, y: np.ndarray, *, seed: int = 0) -> list[dict]:
    if len(raw) > SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(len(raw), SAMPLE, replace=False))
        raw, y = raw.take(rows), y[rows]
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
    for source, values in raw.numbers.items():
        _fill_gap(flags, source, ~np.isnan(values), y)
    for source, (codes, _vocabulary) in raw.categories.items():
        _fill_gap(flags, source, codes >= 0, y)
    for source, (tag_rows, _codes, _vocabulary) in raw.tags.items():
        present = np.zeros(len(raw), dtype=bool)
        present[tag_rows] = True
        _fill_gap(flags, source, present, y)
    return sorted(flags.values(), key=lambda flag: flag["feature"])


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
