"""Raw point-in-time features -> the numeric matrix a model reads, and back to words for explanations.

The encoder is learned from the training contacts and stored on the model version (JSON), so
scoring builds exactly the same columns:
- a number enters as itself (log(1 + x) for heavy-tailed counts and amounts, see features.LOGGED),
  missing as 0 with a "<name> missing" indicator column when the training data had both;
- a category enters one-hot over its common values (at least MIN_SHARE of the training contacts
  and MIN_ROWS of them, the TOP_VALUES most common); other values and missing are all zeros;
- a tag list enters multi-hot over its common tags, likewise.
Columns that do not vary in the training data are left out.
"""

from __future__ import annotations

from collections.abc import Set

import numpy as np

from contacts.models import ActivityKind
from predictions.features import COUNTS, LOGGED, WINDOWS, RawFeatures, count_name

MIN_ROWS = 10
MIN_SHARE = 0.002
TOP_VALUES = 20
TOP_TAGS = 15

_KIND_LABELS = dict(ActivityKind.choices)
_COUNT_LABELS = {
    count_name(kind, days): f"{_KIND_LABELS[kind].lower()}s in last {days} days"
    for kind in ActivityKind.values
    for days in WINDOWS
}
_LABELS = {
    "activity_count": "activities (all time)",
    "engagement_score": "engagement score",
    "past_engagement_score": "engagement score 60 days earlier",
    "recency_days": "days since last counted activity",
    "frequency": "counted activities (frequency)",
    "monetary": "purchase value",
    "recent_activity_count": "activities in last 30 days",
    "previous_activity_count": "activities 30–60 days ago",
    "velocity_ratio": "activity velocity (last 30 / previous 30 days)",
    "open_tickets": "open support tickets",
    "days_in_stage": "days in lifecycle stage",
    **_COUNT_LABELS,
}


def label_of(source: str) -> str:
    return _LABELS.get(source, source.replace("_", " "))


def fit_encoder(raw: RawFeatures, *, exclude: Set[str] = frozenset()) -> list[dict]:
    """The columns for `raw` (the training contacts), leaving out the sources in `exclude`."""
    n = len(raw)
    least = max(MIN_ROWS, int(MIN_SHARE * n))
    columns: list[dict] = []
    for name, values in raw.numbers.items():
        if name in exclude:
            continue
        missing = np.isnan(values)
        present = values[~missing]
        if present.size and present.min() != present.max():
            columns.append({"kind": "number", "source": name, "log": name in LOGGED or name in COUNTS})
        if missing.any() and not missing.all():
            columns.append({"kind": "missing", "source": name})
    for name, (codes, vocabulary) in raw.categories.items():
        if name in exclude:
            continue
        counts = np.bincount(codes[codes >= 0], minlength=len(vocabulary))
        common = [i for i in np.argsort(-counts, kind="stable")[:TOP_VALUES] if least <= counts[i] < n]
        columns += [{"kind": "onehot", "source": name, "value": vocabulary[i]} for i in sorted(common)]
    for name, (_rows, codes, vocabulary) in raw.tags.items():
        if name in exclude:
            continue
        counts = np.bincount(codes, minlength=len(vocabulary)) if codes.size else np.zeros(len(vocabulary), int)
        common = [i for i in np.argsort(-counts, kind="stable")[:TOP_TAGS] if least <= counts[i] < n]
        columns += [{"kind": "tag", "source": name, "value": vocabulary[i]} for i in sorted(common)]
    for column in columns:
        column["name"] = column_name(column)
    return columns


def column_name(column: dict) -> str:
    source = column["source"]
    if column["kind"] == "missing":
        return f"{source} missing"
    if column["kind"] in ("onehot", "tag"):
        return f"{source}={column['value']}"
    return source


def encode(raw: RawFeatures, columns: list[dict]) -> np.ndarray:
    """The float32 matrix (contacts x columns) for `raw`, in the encoder's column order."""
    matrix = np.zeros((len(raw), len(columns)), dtype=np.float32)
    value_codes: dict[str, dict[str, int]] = {}
    for j, column in enumerate(columns):
        source, kind = column["source"], column["kind"]
        if kind in ("number", "missing"):
            values = raw.numbers.get(source)
            if values is None:
                continue
            if kind == "missing":
                matrix[:, j] = np.isnan(values)
                continue
            clean = np.nan_to_num(values, nan=0.0)
            matrix[:, j] = np.log1p(np.maximum(clean, 0)) if column["log"] else clean
        elif kind == "onehot":
            if source not in raw.categories:
                continue
            codes, vocabulary = raw.categories[source]
            lookup = value_codes.setdefault(source, {v: i for i, v in enumerate(vocabulary)})
            if column["value"] in lookup:
                matrix[:, j] = codes == lookup[column["value"]]
        else:
            if source not in raw.tags:
                continue
            rows, codes, vocabulary = raw.tags[source]
            lookup = value_codes.setdefault(source, {v: i for i, v in enumerate(vocabulary)})
            if column["value"] in lookup:
                matrix[rows[codes == lookup[column["value"]]], j] = 1.0
    return matrix


def describe(column: dict, raw: RawFeatures, row: int) -> tuple[str, str]:
    """(what the column is, the contact's value) in words, for the explanation of one contact."""
    source, kind = column["source"], column["kind"]
    label = label_of(source)
    if kind == "missing":
        values = raw.numbers.get(source)
        missing = values is None or bool(np.isnan(values[row]))
        return f"{label} unknown", "yes" if missing else "no"
    if kind == "number":
        values = raw.numbers.get(source)
        value = None if values is None or np.isnan(values[row]) else float(values[row])
        if value is None:
            return label, "unknown"
        return label, f"{int(value):,}" if value == int(value) else f"{value:,.2f}"
    if kind == "onehot":
        codes, vocabulary = raw.categories.get(source, (np.array([-1]), []))
        code = int(codes[row]) if len(codes) > row else -1
        actual = vocabulary[code] if code >= 0 else "unknown"
        return (label, actual) if actual == column["value"] else (f"{label} is not {column['value']}", actual)
    rows, codes, vocabulary = raw.tags.get(source, (np.zeros(0, np.int32), np.zeros(0, np.int32), []))
    has = any(vocabulary[c] == column["value"] for c in codes[rows == row])
    return (f"{label} include", column["value"]) if has else (f"{label} do not include", column["value"])


def describe_player(columns: list[dict], raw: RawFeatures, row: int) -> tuple[str, str]:
    """(what the field is, the contact's value) for the columns of one field: a number with its
    missing-indicator, a category's one-hot columns, or one tag (see attribution.players)."""
    first = columns[0]
    if first["kind"] == "onehot":
        return label_of(first["source"]), describe(first, raw, row)[1]
    return describe(next((c for c in columns if c["kind"] == "number"), first), raw, row)
