"""Segment boundary tests and dimension comparison: which way of cutting contacts separates behaviour more?

Boundary test: a number field (`company.employee_count`) and two or more bracketings of it, each a
list of half-open brackets {"from": 1, "to": 50} (from <= value < to; the last may have no `to`).
For each bracketing: per bracket, contacts and outcome rates with 95% intervals; how distinct the
brackets are (chi-square and Cramér's V on the outcome; Kruskal–Wallis and epsilon² on the
engagement score); which bracketing separates the outcome more, with a bootstrap interval for the
difference in Cramér's V; and cut points suggested by a depth-limited decision tree fitted on 70%
of contacts and scored on the other 30%, beside the given bracketings scored on the same 30%.

Dimension comparison: segmentation schemes (firmographic, behavioural, lifecycle, RFV, or a list
of segments) compared by how much of an outcome they explain on held-out contacts: each scheme's
cells are learned on 70% of contacts (cells under MIN_CELL are pooled), and on the other 30% the
information gain (mutual information in bits), Cramér's V and the lift of the best cell, each
with a bootstrap interval; the winner and its margin over the runner-up, with an interval.

Outcomes over the `days` before `now` per contact, as segment analytics counts them
(segments/analytics/channels.py): converted (a won deal closed or a purchase), engaged (an
engagement activity), responded (an e-mail click, on one campaign if named); revenue is won deal
amounts plus purchase values (segments/outcome_counts.py, which aggregates them per contact once
per statement). Every figure comes from one statement: tables of counts per cell, and for the
ranks of engagement scores each scored contact's score, packed into the row of its cell of the
joint table, which names its brackets (a sort of a million floats in numpy takes a tenth of a
second; PostgreSQL's window sums over them, seconds).

scipy and scikit-learn are imported by the functions that use them, when first used: the admin
imports this module in every process, and those imports cost seconds and ~100 MB of every worker
(as in predictions/__init__.py). The first report in a process imports them in a thread while its
statement runs in the database (`_tuned`), so that it does not wait for them afterwards.
"""

from __future__ import annotations

import importlib
import math
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from decimal import Decimal

import numpy as np
from django.db.models import (
    Case,
    ExpressionWrapper,
    F,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.text import slugify

from contacts.models import Contact, ContactMetrics
from segments.analytics.dialect import planner_settings
from segments.analytics.wilson import Estimate, wilson
from segments.editing import save_segment
from segments.models import Membership, Segment
from segments.outcome_counts import OUTCOMES, count_outcomes
from segments.rules.compiler import value_expression
from segments.rules.registry import get_fields

BOOTSTRAP = 1000
# Contacts train or are held out by a scrambled id (an affine map modulo the prime 2^31 - 1, then
# modulo 10: 0-6 train, 7-9 held out), so that nothing that follows the order of ids, such as an
# import's round robin, lines up with the split.
PRIME, MULTIPLIER, OFFSET = 2_147_483_647, 1_103_515_245, 12_345
HOLDOUT_MODULUS, TRAIN_BELOW = 10, 7
MIN_CELL = 30  # a dimension cell with fewer training contacts is pooled into "other"
WORK_MEM = "128MB"  # PostgreSQL, for the statement of a boundary test or dimension comparison


class BadInput(ValueError):
    """Refused input, naming the parameter (a JSON path) to fix."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


# --- input ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bracket:
    low: float | None
    high: float | None

    @property
    def label(self) -> str:
        if self.low is None:
            return f"< {_num(self.high)}"
        if self.high is None:
            return f"{_num(self.low)}+"
        if float(self.low).is_integer() and float(self.high).is_integer():
            return f"{_num(self.low)}–{_num(self.high - 1)}"
        return f"{_num(self.low)} to < {_num(self.high)}"

    def q(self, name: str) -> Q:
        q = Q()
        if self.low is not None:
            q &= Q(**{f"{name}__gte": self.low})
        if self.high is not None:
            q &= Q(**{f"{name}__lt": self.high})
        return q

    def as_rule(self, path: str) -> dict:
        parts = []
        if self.low is not None:
            parts.append({"field": path, "op": "gte", "value": self.low})
        if self.high is not None:
            parts.append({"field": path, "op": "lt", "value": self.high})
        return {"all": parts}


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,g}"


def _number(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadInput(f"{where}: {value!r} is not a number.", field=where)
    return value


def parse_bracketing(raw: object, *, where: str) -> list[Bracket]:
    """Brackets that meet end to start with no overlap and no gap."""
    if not isinstance(raw, list) or len(raw) < 2:
        raise BadInput(
            f"{where}: a bracketing is a list of at least two brackets like {{'from': 1, 'to': 50}}.", field=where
        )
    brackets: list[Bracket] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, dict) or set(item) - {"from", "to"}:
            raise BadInput(f"{at}: a bracket is an object with 'from' and 'to' (from <= value < to).", field=at)
        low, high = _number(item.get("from"), f"{at}.from"), _number(item.get("to"), f"{at}.to")
        if low is None and i > 0:
            raise BadInput(f"{at}.from: only the first bracket may leave 'from' open.", field=f"{at}.from")
        if high is None and i < len(raw) - 1:
            raise BadInput(f"{at}.to: only the last bracket may leave 'to' open.", field=f"{at}.to")
        if low is not None and high is not None and low >= high:
            raise BadInput(f"{at}: 'from' ({_num(low)}) must be below 'to' ({_num(high)}).", field=at)
        before = brackets[-1].high if brackets else None
        if before is not None and low is not None and low != before:  # (only the first `from` and last `to` are open)
            kind = "overlaps" if low < before else "leaves a gap after"
            raise BadInput(
                f"{at}.from: {_num(low)} {kind} the bracket before, which ends below {_num(before)}; "
                f"brackets must meet with no overlap and no gap (this one should start at {_num(before)}).",
                field=f"{at}.from",
            )
        brackets.append(Bracket(low, high))
    return brackets


def numeric_field(path: object, fields: dict | None = None) -> str:
    fields = fields if fields is not None else get_fields()
    if not isinstance(path, str) or path not in fields:
        raise BadInput(
            f"field: {path!r} is not a field; use a number field such as company.employee_count.", field="field"
        )
    if fields[path].type != "number":
        raise BadInput(
            f"field: {path!r} is a {fields[path].type} field; a boundary test needs a number field.", field="field"
        )
    return path


def check_outcome(outcome: object) -> str:
    if outcome not in OUTCOMES:
        raise BadInput(f"outcome: {outcome!r} is not an outcome; use one of {', '.join(OUTCOMES)}.", field="outcome")
    return outcome


def check_days(days: object) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 1096:
        raise BadInput(f"days: {days!r} is not a number of days from 1 to 1096.", field="days")
    return days


# What the reports call after their statement, imported while it runs (see _tuned).
STATISTICS_MODULES = ("scipy.stats", "scipy.stats.contingency", "sklearn.tree")


@contextmanager
def _tuned() -> Iterator[None]:
    """For the block (the report's statement) only. On PostgreSQL: JIT off, more memory for
    hashes, and no sort where anything else will do. The statements look costly enough to the
    planner to compile, which costs seconds and saves nothing here; their per-contact sets (a row
    per contact with activity in the window) spill to disk at the default 4MB; and the planner
    cannot count the groups of the CASE expressions count_outcomes groups by, takes them for a
    million, and sorted a million rows to group them into a few dozen (0.75 s of a boundary test
    at 1M contacts) instead of hashing them.

    Meanwhile a thread imports the statistics libraries not imported yet: the statement waits on the
    database with the interpreter free, and the first report in a process saved ~1.2 s at 1M."""
    missing = [name for name in STATISTICS_MODULES if name not in sys.modules]
    importer = threading.Thread(target=_import_all, args=[missing], daemon=True) if missing else None
    if importer:
        importer.start()
    try:
        with planner_settings(jit="off", work_mem=WORK_MEM, enable_sort="off"):
            yield
    finally:
        if importer:
            importer.join()


def _import_all(names: list[str]) -> None:
    for name in names:
        importlib.import_module(name)


def _holdout() -> Case:
    return Case(When(Q(hold_mod__gte=TRAIN_BELOW), then=Value(1)), default=Value(0), output_field=IntegerField())


def _with_holdout(contacts: QuerySet) -> QuerySet:
    scrambled = ExpressionWrapper(((F("pk") % PRIME) * MULTIPLIER + OFFSET) % PRIME, output_field=IntegerField())
    return contacts.annotate(hold_mod=scrambled % HOLDOUT_MODULUS).annotate(holdout=_holdout())


# --- statistics on count tables ------------------------------------------------------------------


def cramers_v(table: np.ndarray) -> float | None:
    """Cramér's V of a contingency table, empty rows and columns dropped (scipy's association)."""
    table = np.rint(table).astype(np.int64)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return None
    from scipy.stats.contingency import association

    return float(association(table, method="cramer"))


def cramers_v_of_each(tables: np.ndarray) -> np.ndarray:
    """Cramér's V of each table of a stack (`tables[i]`: rows × columns) as cramers_v() finds it,
    NaN where that finds none, all at once: a bootstrap asks it of 1,000 resamples, and scipy's
    association, a table a call, took ~1 ms each (2 s of a boundary test, 4 s of a comparison of
    four schemes). The chi-square statistics are scipy.stats.chisquare's over the stack against
    the expected counts of each table's margins; the cells of an empty row or column (expected 0,
    observed 0) add nothing, as dropping them does."""
    tables = np.rint(tables).astype(float)
    n = tables.sum(axis=(1, 2))
    rows, cols = tables.sum(axis=2), tables.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = rows[:, :, None] * cols[:, None, :] / n[:, None, None]
    empty = ~(expected > 0)  # (NaN for an empty table)
    observed, expected = np.where(empty, 1.0, tables), np.where(empty, 1.0, expected)
    from scipy import stats

    flat = (len(tables), -1)
    chi2 = stats.chisquare(observed.reshape(flat), expected.reshape(flat), axis=1).statistic
    k = np.minimum((rows > 0).sum(axis=1), (cols > 0).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k >= 2, np.sqrt(chi2 / (n * (k - 1))), np.nan)


def mutual_information(table: np.ndarray) -> float | None:
    """Information gain of the cells about the outcome, in bits (rows: cells, columns: outcome)."""
    n = table.sum()
    if n == 0:
        return None
    joint = table / n
    rows, cols = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    mask = joint > 0
    return float((joint[mask] * np.log2(joint[mask] / (rows @ cols)[mask])).sum())


def mutual_information_of_each(tables: np.ndarray) -> np.ndarray:
    """mutual_information() of each table of a stack, all at once (NaN for an empty table): a
    bootstrap asks it of 1,000 resamples per scheme, and a call each took 0.4 s of a comparison
    of five schemes."""
    n = tables.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        joint = tables / n[:, None, None]
        independent = joint.sum(axis=2, keepdims=True) * joint.sum(axis=1, keepdims=True)
        terms = np.where(joint > 0, joint * np.log2(joint / independent), 0.0)
    return np.where(n > 0, terms.sum(axis=(1, 2)), np.nan)


def kruskal_from_counts(
    values: np.ndarray, groups: np.ndarray, counts: np.ndarray
) -> tuple[float, float, float] | None:
    """Kruskal–Wallis H (tie-corrected, as scipy.stats.kruskal), its p-value and epsilon², from
    (value, group, count) rows: ranks of tied values are averaged without expanding the rows."""
    keep = counts > 0
    values, groups, counts = values[keep], groups[keep], counts[keep]
    present = np.unique(groups)
    _distinct, inverse = np.unique(values, return_inverse=True)
    tied = np.bincount(inverse, weights=counts)
    mean_rank = np.cumsum(tied) - (tied - 1) / 2
    rank_sums = np.bincount(np.searchsorted(present, groups), weights=counts * mean_rank[inverse])
    sizes = np.bincount(np.searchsorted(present, groups), weights=counts)
    return kruskal_from_rank_sums(sizes, rank_sums, float((tied**3 - tied).sum()))


def kruskal_of_sorted(values: np.ndarray, groups: np.ndarray) -> tuple[float, float, float] | None:
    """kruskal_from_counts() of a row per contact, `values` in ascending order: the mean ranks of
    tied values from the runs of equal values, with no sort of its own, so that the scores of a
    boundary test are sorted once for every bracketing (np.unique's sort of the values and of
    the groups, per bracketing, took 0.57 s of a boundary test of two at 1M contacts)."""
    if len(values) == 0:
        return None
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    tied = np.diff(np.r_[starts, len(values)]).astype(float)
    mean_rank = np.cumsum(tied) - (tied - 1) / 2
    groups = groups.astype(np.int64)
    sizes = np.bincount(groups).astype(float)
    rank_sums = np.bincount(groups, weights=np.repeat(mean_rank, tied.astype(np.int64)))
    return kruskal_from_rank_sums(sizes, rank_sums, float((tied**3 - tied).sum()))


def kruskal_from_rank_sums(sizes: np.ndarray, rank_sums: np.ndarray, ties: float) -> tuple[float, float, float] | None:
    """kruskal_from_counts() from each group's size and sum of (mean) ranks, and the sum of t³ - t
    over the sizes t of the groups of tied values."""
    sizes, rank_sums = sizes[sizes > 0], rank_sums[sizes > 0]
    n = float(sizes.sum())
    if len(sizes) < 2 or n < 3:
        return None
    correction = 1 - ties / (n**3 - n)
    if correction == 0:
        return None
    h = (12 / (n * (n + 1)) * float((rank_sums**2 / sizes).sum()) - 3 * (n + 1)) / correction
    from scipy import stats

    return h, float(stats.chi2.sf(h, len(sizes) - 1)), h / (n - 1)


def bootstrap(
    cells: np.ndarray, statistic, *, draws: int = BOOTSTRAP, seed: int = 18, stacked: bool = False
) -> tuple[float, float] | None:
    """A 95% percentile interval of statistic(table) over multinomial resamples of the count table;
    `stacked`: statistic(resamples) takes them all at once and gives an array (NaN for none)."""
    n = int(cells.sum())
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    samples = rng.multinomial(n, cells.ravel() / n, size=draws).reshape(draws, *cells.shape)
    if stacked:
        found = statistic(samples)
        values = list(found[~np.isnan(found)])
    else:
        values = [value for value in map(statistic, samples) if value is not None]
    if len(values) < draws // 2:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


# --- boundary test -------------------------------------------------------------------------------


@dataclass
class BracketResult:
    label: str
    bracket: Bracket
    contacts: int
    outcome: Estimate
    engaged: Estimate
    revenue_per_contact: Estimate


@dataclass
class BracketingResult:
    index: int
    brackets: list[BracketResult]
    outside: int  # contacts with a value in no bracket, or none
    chi2: float | None
    p_value: float | None
    cramers_v: float | None
    kruskal_h: float | None = None
    kruskal_p: float | None = None
    epsilon_squared: float | None = None
    heldout_v: float | None = None


@dataclass
class BoundaryReport:
    field: str
    outcome: str
    days: int
    now: datetime
    bracketings: list[BracketingResult]
    best: int | None
    difference: tuple[float, float, float] | None  # V(best) - V(runner-up) and its interval
    # (dataclass_field: the class's own `field` attribute would hide dataclasses.field here)
    suggested: list[Bracket] = dataclass_field(default_factory=list)
    suggested_heldout_v: float | None = None
    summary: str = ""


def _bracket_case(brackets: list[Bracket]) -> Case:
    return Case(
        *[When(b.q("bvalue"), then=Value(i)) for i, b in enumerate(brackets)],
        default=Value(-1),
        output_field=IntegerField(),
    )


def boundary_test(
    path: str,
    bracketings: list[list[Bracket]],
    *,
    outcome: str = "converted",
    days: int = 90,
    now: datetime | None = None,
    campaign: str = "",
) -> BoundaryReport:
    if len(bracketings) < 2:
        raise BadInput("bracketings: give at least two bracketings to compare.", field="bracketings")
    fields = get_fields()
    path, outcome, days = numeric_field(path, fields), check_outcome(outcome), check_days(days)
    now = now or timezone.now()
    contacts = _with_holdout(Contact.objects.annotate(bvalue=value_expression(fields[path])))
    names = [f"b{i}" for i in range(len(bracketings))]
    contacts = contacts.annotate(**{name: _bracket_case(b) for name, b in zip(names, bracketings, strict=True)})
    window = {"now": now, "days": days, "campaign": campaign}
    with _tuned():
        return _boundary_report(contacts, path, bracketings, names, outcome, window)


def _boundary_report(contacts, path, bracketings, names, outcome, window) -> BoundaryReport:
    # One statement: the joint table of every bracketing's bracket, the outcomes and the hold-out
    # flag; the tree's training rows (contacts per value of the field, hold-out flag and outcome);
    # and each scored contact's engagement score and brackets, for the ranks (the scores packed
    # into the rows of the joint table, whose keys are the brackets).
    outcomes = list(dict.fromkeys([outcome, "engaged"]))
    counts = count_outcomes(
        contacts.annotate(score=F("metrics__engagement_score")),
        [[*names, *outcomes, "holdout"], ["bvalue", "holdout", outcome]],
        values=["score", *names],
        revenue=True,
        **window,
    )
    grouped, per_value = counts.groups
    by_score = counts.values[np.argsort(counts.values[:, 0])]  # (sorted once for every bracketing's ranks)
    results = [
        _bracketing_result(i, name, b, grouped, by_score[:, [0, 1 + i]], outcome)
        for i, (name, b) in enumerate(zip(names, bracketings, strict=True))
    ]
    report = BoundaryReport(path, outcome, window["days"], window["now"], results, None, None)
    _compare(report, names, grouped, outcome)
    rows = [row for row in per_value if row["bvalue"] is not None]
    _suggest(report, rows, outcome, max_brackets=max(len(b) for b in bracketings))
    report.summary = _boundary_summary(report)
    return report


def _bracketing_result(index, name, brackets, grouped, scored, outcome) -> BracketingResult:
    """`scored`: (engagement score, bracket or -1) of each contact with a score, by score."""
    k = len(brackets)
    table = np.zeros((k, 2))
    engaged = np.zeros(k)
    revenue = [[Decimal(0), Decimal(0)] for _ in range(k)]
    outside = 0
    for row in grouped:
        b = row[name]
        if b < 0:
            outside += row["n"]
            continue
        table[b, row[outcome]] += row["n"]
        engaged[b] += row["n"] * row["engaged"]
        revenue[b][0] += row["revenue"] or 0
        revenue[b][1] += row["revenue_sq"] or 0
    results = []
    for b, bracket in enumerate(brackets):
        n = int(table[b].sum())
        results.append(
            BracketResult(
                bracket.label,
                bracket,
                n,
                wilson(int(table[b, 1]), n),
                wilson(int(engaged[b]), n),
                _mean(revenue[b][0], revenue[b][1], n),
            )
        )
    chi2 = p = None
    present = table[table.sum(axis=1) > 0]
    if present.shape[0] >= 2 and (present.sum(axis=0) > 0).all():
        from scipy import stats

        chi2, p, _dof, _expected = stats.chi2_contingency(present, correction=False)
    result = BracketingResult(index, results, outside, _f(chi2), _f(p), cramers_v(table))
    inside = scored[scored[:, 1] >= 0]
    if len(inside):
        kw = kruskal_of_sorted(inside[:, 0], inside[:, 1])
        if kw:
            result.kruskal_h, result.kruskal_p, result.epsilon_squared = kw
    return result


def _mean(total: Decimal, squares: Decimal, n: int) -> Estimate:
    if n == 0:
        return Estimate(None, None, None)
    mean = total / n
    if n < 2:
        return Estimate(float(mean), None, None)
    variance = max(Decimal(0), (squares - total * total / n) / (n - 1))
    from scipy import stats

    half = stats.t.ppf(0.975, n - 1) * math.sqrt(float(variance) / n)
    return Estimate(float(mean), float(mean) - half, float(mean) + half)


def _f(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _joint(grouped, names, outcome, *, holdout: int | None = None) -> np.ndarray:
    """Counts by (bracket of each bracketing, outcome); -1 (outside) kept as an extra last index."""
    sizes = [max(row[name] for row in grouped) + 2 for name in names] if grouped else [1] * len(names)
    cells = np.zeros((*sizes, 2))
    for row in grouped:
        if holdout is not None and row["holdout"] != holdout:
            continue
        cells[(*[row[name] for name in names], row[outcome])] += row["n"]
    return cells


def _v_of(cells: np.ndarray, axis: int) -> float | None:
    """Cramér's V of one bracketing's brackets against the outcome, from the joint table (outside dropped)."""
    other = tuple(a for a in range(cells.ndim - 1) if a != axis)
    table = cells.sum(axis=other) if other else cells
    return cramers_v(table[:-1])


def _v_of_each(samples: np.ndarray, axis: int) -> np.ndarray:
    """_v_of() of each joint table of a stack (NaN where it has none)."""
    other = tuple(1 + a for a in range(samples.ndim - 2) if a != axis)
    tables = samples.sum(axis=other) if other else samples
    return cramers_v_of_each(tables[:, :-1])


def _compare(report: BoundaryReport, names, grouped, outcome) -> None:
    cells = _joint(grouped, names, outcome)
    held = _joint(grouped, names, outcome, holdout=1)
    for result in report.bracketings:
        result.heldout_v = _v_of(held, result.index)
    scored = sorted(
        ((r.cramers_v, r) for r in report.bracketings if r.cramers_v is not None), key=lambda pair: -pair[0]
    )
    if len(scored) < 2:
        return
    (best_v, best), (second_v, second) = scored[0], scored[1]
    report.best = best.index

    def difference(samples: np.ndarray) -> np.ndarray:
        return _v_of_each(samples, best.index) - _v_of_each(samples, second.index)

    interval = bootstrap(cells, difference, stacked=True)
    if interval:
        report.difference = (best_v - second_v, *interval)


def _suggest(report, rows, outcome, *, max_brackets: int) -> None:
    """Cut points from a decision tree on the field, fitted on the training contacts only."""
    train = [r for r in rows if r["holdout"] == 0]
    if not train or len({r[outcome] for r in train}) < 2:
        return
    x = np.array([[float(r["bvalue"])] for r in train])
    y = np.array([r[outcome] for r in train])
    w = np.array([r["n"] for r in train], dtype=float)
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(
        max_leaf_nodes=max(2, max_brackets), min_weight_fraction_leaf=0.05, random_state=18
    ).fit(x, y, sample_weight=w)
    thresholds = sorted(t for t, f in zip(tree.tree_.threshold, tree.tree_.feature, strict=True) if f >= 0)
    if not thresholds:
        return
    integral = all(float(r["bvalue"]).is_integer() for r in rows)
    cuts = sorted({math.floor(t) + 1 if integral else t for t in thresholds})
    edges = [None, *cuts, None]
    report.suggested = [Bracket(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]
    held = np.zeros((len(report.suggested), 2))
    for r in rows:
        if r["holdout"] == 1:
            i = sum(1 for c in cuts if float(r["bvalue"]) >= c)
            held[i, r[outcome]] += r["n"]
    report.suggested_heldout_v = cramers_v(held)


def _boundary_summary(report: BoundaryReport) -> str:
    if report.best is None:
        return "Not enough contacts with an outcome to compare the bracketings."
    best = report.bracketings[report.best]
    labels = " / ".join(b.label for b in best.brackets)
    if report.difference is None:
        return f"Bracketing {report.best + 1} ({labels}) has the highest Cramér's V ({best.cramers_v:.3f})."
    value, low, high = report.difference
    if low > 0:
        return (
            f"Bracketing {report.best + 1} ({labels}) separates {report.outcome} more: "
            f"Cramér's V {best.cramers_v:.3f}, "
            f"{value:.3f} above the next (95% bootstrap interval {low:.3f} to {high:.3f})."
        )
    return (
        f"No clear winner: bracketing {report.best + 1} ({labels}) has the highest Cramér's V ({best.cramers_v:.3f}), "
        f"but its margin of {value:.3f} has a 95% bootstrap interval from {low:.3f} to {high:.3f}, which includes 0."
    )


def create_bracket_segments(path: str, brackets: list[Bracket], *, prefix: str, user=None) -> list[Segment]:
    """One dynamic segment per bracket (rule: from <= field < to), saved and queued for refresh."""
    fields = get_fields()
    label = fields[numeric_field(path, fields)].label
    created = []
    for bracket in brackets:
        name = f"{prefix} {label} {bracket.label}"[:200]
        segment = Segment(name=name, slug=_slug(name), kind="dynamic", rule=bracket.as_rule(path))
        created.append(save_segment(segment, user=user, note=f"Boundary test bracket {bracket.label}"))
    return created


def _slug(name: str) -> str:
    base = slugify(name)[:90] or "bracket"
    slug, n = base, 2
    while Segment.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


# --- dimension comparison ------------------------------------------------------------------------


SIZE_BANDS = [Bracket(None, 50), Bracket(50, 250), Bracket(250, 1000), Bracket(1000, None)]
SCHEMES = {
    "firmographic": "Industry × company size band",
    "behavioral": "Engagement level × top topic",
    "lifecycle": "Lifecycle stage",
    "rfv": "Recency / frequency / value cell",
    "segments": "The chosen segments",
}


# The schemes whose cells are columns of ContactMetrics: counted from its rows alone, a contact
# without a row (cell "" × "") by subtraction from all contacts, with no join of a million metrics
# rows to a million contacts.
METRICS_SCHEMES = {"behavioral", "rfv"}


def _scheme_cells(scheme: str) -> dict:
    """Annotations whose values, together, name a row's cell in the scheme: of ContactMetrics for
    METRICS_SCHEMES, of Contact for the others, none for "segments" (_segment_cells)."""
    if scheme == "firmographic":
        band = Case(
            *[When(b.q("company__employee_count"), then=Value(i)) for i, b in enumerate(SIZE_BANDS)],
            default=Value(-1),
            output_field=IntegerField(),
        )
        return {"c1": Coalesce(F("company__industry"), Value("")), "c2": band}
    if scheme == "behavioral":
        return {"c1": Coalesce(F("engagement_level"), Value("")), "c2": Coalesce(F("top_topic"), Value(""))}
    if scheme == "lifecycle":
        return {"c1": F("lifecycle_stage")}
    if scheme == "rfv":
        return {"c1": Coalesce(F("rfv_cell"), Value(""))}
    return {}


def _segment_cells(segments: list[Segment]) -> list[tuple[str, QuerySet]]:
    """The "segments" scheme's cell, as count_outcomes' first_of: the first of the segments the
    contact is in, read from the members' ids as bit masks.

    As masks, at 1M contacts with the five largest segments of a crmseg_bench copy (3.05M
    memberships): one pass over the memberships into 15.6k words, 0.47 s (a parallel plan), and
    their join with the contacts' other columns 0.22 s, of the contacts' 1.48 s (EXPLAIN ANALYZE,
    load ~1); the comparison's statement 4.34 / 4.37 s -> 2.67 / 2.77 s of backend CPU with the
    metrics schemes counted apart (min / median of 3, parallel plans off). Not kept: grouping the
    members by word and segment first, then one row per word (2.80 / 2.93 s against 2.80 / 2.91).
    As a CASE of an EXISTS per segment, PostgreSQL ran each EXISTS as a hashed subplan (the
    segment's members read once from membership_segment_contact_unique) and probed it per
    contact: with five segments of 400k-840k members (3M memberships) at 1M contacts the CASE
    took 2.3 s of a 6.8 s comparison (2.1-2.9 s), and grouping the memberships by contact (the
    first segment of each) and joining them, 2.9 s. A chain of merge joins on the contact id
    (each segment's members in id order from that index) counted the same cells in 1.2-1.5 s,
    but the planner takes it only with hash joins off, which the statement's other joins need.
    One pass with GROUPING SETS instead of the WITH: with sorts off the planner's plan (EXPLAIN,
    not run at 1M) feeds a MixedAggregate rows in order from nested loops over index scans; at
    100k it took merge joins over random reads of ContactMetrics' primary key, no faster."""
    return [(s.slug, Membership.objects.filter(segment=s).values("contact_id")) for s in segments]


def _count_cells(
    schemes: list[str], segments: list[Segment], outcome: str, *, now: datetime, days: int, campaign: str
) -> list[tuple[list[str], list[dict]]]:
    """Per scheme, the names of its cell's columns and its rows: contacts by cell, hold-out flag and
    outcome. One statement groups the contacts for the schemes of Contact and the metrics rows for
    METRICS_SCHEMES."""
    keys: list[list[str]] = []
    annotations: list[dict] = []
    first_of: dict[str, list[tuple[str, QuerySet]]] = {}
    for i, scheme in enumerate(schemes):
        annotations.append({f"s{i}_{name}": value for name, value in _scheme_cells(scheme).items()})
        keys.append([*annotations[i]])
        if scheme == "segments":
            keys[i].append(f"s{i}_c1")
            first_of[f"s{i}_c1"] = _segment_cells(segments)
    on_contacts = [i for i, scheme in enumerate(schemes) if scheme not in METRICS_SCHEMES]
    on_metrics = [i for i, scheme in enumerate(schemes) if scheme in METRICS_SCHEMES]

    def rows_of(model, indexes: list[int]) -> QuerySet:
        return _with_holdout(model.objects.annotate(**{k: v for i in indexes for k, v in annotations[i].items()}))

    groupings = [[*own, "holdout", outcome] for own in keys]
    with _tuned():
        counts = count_outcomes(
            rows_of(Contact, on_contacts),
            [groupings[i] for i in on_contacts] or [["holdout", outcome]],  # (all contacts, for the totals)
            first_of=first_of,
            others=[(rows_of(ContactMetrics, on_metrics), [groupings[i] for i in on_metrics])] if on_metrics else [],
            now=now,
            days=days,
            campaign=campaign,
        ).groups
    grouped = dict(zip(on_contacts, counts, strict=False))
    all_contacts = counts[0]
    for i, rows in zip(on_metrics, counts[max(len(on_contacts), 1) :], strict=True):
        grouped[i] = rows + _without_metrics(all_contacts, rows, keys[i], outcome)
    return [(keys[i], grouped[i]) for i in range(len(schemes))]


def _without_metrics(all_contacts: list[dict], metrics: list[dict], keys: list[str], outcome: str) -> list[dict]:
    """Rows of the cell "" × "" for the contacts without a metrics row: all contacts less those
    with one, by hold-out flag and outcome."""
    left: dict[tuple, int] = {}
    for row in all_contacts:
        left[row["holdout"], row[outcome]] = left.get((row["holdout"], row[outcome]), 0) + row["n"]
    for row in metrics:
        left[row["holdout"], row[outcome]] -= row["n"]
    return [{**dict.fromkeys(keys, ""), "holdout": h, outcome: o, "n": n} for (h, o), n in left.items() if n]


@dataclass
class SchemeResult:
    scheme: str
    label: str
    cells: int  # after pooling small ones
    information_gain: float | None
    information_interval: tuple[float, float] | None
    cramers_v: float | None
    v_interval: tuple[float, float] | None
    best_cell: str
    best_lift: float | None  # held-out rate of the best training cell / held-out overall rate
    lift_interval: tuple[float, float] | None


@dataclass
class DimensionReport:
    outcome: str
    days: int
    campaign: str
    heldout_contacts: int
    schemes: list[SchemeResult]
    winner: str | None
    margin: tuple[float, float, float] | None  # information gain of winner - runner-up, interval
    summary: str


def compare_dimensions(
    schemes: list[str],
    *,
    outcome: str = "converted",
    days: int = 90,
    campaign: str = "",
    segments: list[Segment] | None = None,
    now: datetime | None = None,
) -> DimensionReport:
    outcome, days = check_outcome(outcome), check_days(days)
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown or len(schemes) < 2:
        raise BadInput(f"schemes: name at least two of {', '.join(SCHEMES)}.", field="schemes")
    if "segments" in schemes and not segments:
        raise BadInput("segments: the 'segments' scheme needs at least one segment.", field="segments")
    now = now or timezone.now()
    results, tables = [], {}
    heldout_total = 0
    for scheme, (keys, rows) in zip(
        schemes, _count_cells(schemes, segments or [], outcome, now=now, days=days, campaign=campaign), strict=True
    ):
        result, table = _scheme_result(scheme, rows, keys, outcome)
        results.append(result)
        tables[scheme] = table
        heldout_total = int(table.sum())
    scored = sorted(
        ((r.information_gain, r) for r in results if r.information_gain is not None), key=lambda pair: -pair[0]
    )
    ranked = [r for _gain, r in scored]
    winner = ranked[0].scheme if ranked else None
    margin = None
    if len(scored) >= 2:
        (gain_a, first), (gain_b, runner_up) = scored[0], scored[1]
        margin = _margin(tables[first.scheme], tables[runner_up.scheme], gain_a - gain_b)
    summary = _dimension_summary(ranked, margin, outcome)
    return DimensionReport(outcome, days, campaign, heldout_total, results, winner, margin, summary)


def _scheme_result(scheme: str, rows: list[dict], keys: list[str], outcome: str) -> tuple[SchemeResult, np.ndarray]:
    train: dict[tuple, list[int]] = {}
    for row in rows:
        if row["holdout"] == 0:
            cell = train.setdefault(tuple(row[k] for k in keys), [0, 0])
            cell[row[outcome]] += row["n"]
    kept = sorted((c for c, (no, yes) in train.items() if no + yes >= MIN_CELL), key=str)
    index = {c: i for i, c in enumerate(kept)}
    other = len(kept)
    table = np.zeros((other + 1, 2))
    for row in rows:
        if row["holdout"] == 1:
            table[index.get(tuple(row[k] for k in keys), other), row[outcome]] += row["n"]
    rates = {c: yes / (no + yes) for c, (no, yes) in train.items() if c in index}
    best = max(rates, key=lambda c: rates[c]) if rates else None
    best_row = index[best] if best is not None else None

    def lift(tables: np.ndarray) -> np.ndarray:
        """Of each table of a stack, the best cell's rate over the overall rate (NaN for none)."""
        if best_row is None:
            return np.full(len(tables), np.nan)
        best, total, converted = tables[:, best_row], tables.sum(axis=(1, 2)), tables[:, :, 1].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (best[:, 1] / best.sum(axis=1)) / (converted / total)
        return np.where((best.sum(axis=1) > 0) & (converted > 0), value, np.nan)

    result = SchemeResult(
        scheme=scheme,
        label=SCHEMES[scheme],
        cells=int((table.sum(axis=1) > 0).sum()),
        information_gain=mutual_information(table),
        information_interval=bootstrap(table, mutual_information_of_each, stacked=True),
        cramers_v=cramers_v(table),
        v_interval=bootstrap(table, cramers_v_of_each, stacked=True),
        best_cell=" × ".join(str(part) or "(none)" for part in best) if best is not None else "",
        best_lift=_f(lift(table[None])[0]),
        lift_interval=bootstrap(table, lift, stacked=True),
    )
    return result, table


def _margin(a: np.ndarray, b: np.ndarray, value: float) -> tuple[float, float, float] | None:
    """Interval of the difference in information gain, the two held-out tables resampled
    independently. They cross-tabulate the same contacts, whose two gains move together, so the
    paired interval would be narrower: this one errs on the side of "no clear winner"."""
    if a.sum() == 0 or b.sum() == 0:
        return None
    rng = np.random.default_rng(18)
    na, nb = int(a.sum()), int(b.sum())
    # (A resample of na > 0 contacts always has a gain: no NaN.)
    gains_a = mutual_information_of_each(rng.multinomial(na, a.ravel() / na, size=BOOTSTRAP).reshape(-1, *a.shape))
    gains_b = mutual_information_of_each(rng.multinomial(nb, b.ravel() / nb, size=BOOTSTRAP).reshape(-1, *b.shape))
    low, high = np.percentile(gains_a - gains_b, [2.5, 97.5])
    return value, float(low), float(high)


def _dimension_summary(ranked: list[SchemeResult], margin, outcome: str) -> str:
    if not ranked:
        return f"No held-out contacts with {outcome} outcomes to compare the schemes."
    winner = ranked[0]
    text = f"{winner.label} explains most of {outcome} on held-out contacts ({winner.information_gain:.4f} bits)"
    if margin is None:
        return text + "."
    value, low, high = margin
    if low > 0:
        return text + f", {value:.4f} bits more than {ranked[1].label} (95% interval {low:.4f} to {high:.4f})."
    return (
        f"No clear winner: {winner.label} leads {ranked[1].label} by {value:.4f} bits, but the 95% interval "
        f"({low:.4f} to {high:.4f}) includes 0."
    )


# --- as data (API) ------------------------------------------------------------------------------


def _estimate(e: Estimate) -> dict:
    return {"value": e.value, "low": e.low, "high": e.high}


def _interval(pair: tuple[float, float] | None) -> dict | None:
    return None if pair is None else {"low": pair[0], "high": pair[1]}


def _bracket(b: Bracket) -> dict:
    return {"from": b.low, "to": b.high, "label": b.label}


def boundary_dict(report: BoundaryReport) -> dict:
    return {
        "field": report.field,
        "outcome": report.outcome,
        "days": report.days,
        "computed_at": report.now.isoformat(),
        "summary": report.summary,
        "best": report.best,
        "difference": None
        if report.difference is None
        else {"value": report.difference[0], "low": report.difference[1], "high": report.difference[2]},
        "bracketings": [
            {
                "brackets": [
                    {
                        **_bracket(b.bracket),
                        "contacts": b.contacts,
                        "outcome_rate": _estimate(b.outcome),
                        "engagement_rate": _estimate(b.engaged),
                        "revenue_per_contact": _estimate(b.revenue_per_contact),
                    }
                    for b in r.brackets
                ],
                "outside": r.outside,
                "chi2": r.chi2,
                "p_value": r.p_value,
                "cramers_v": r.cramers_v,
                "heldout_cramers_v": r.heldout_v,
                "kruskal_h": r.kruskal_h,
                "kruskal_p": r.kruskal_p,
                "epsilon_squared": r.epsilon_squared,
            }
            for r in report.bracketings
        ],
        "suggested": {
            "brackets": [_bracket(b) for b in report.suggested],
            "heldout_cramers_v": report.suggested_heldout_v,
        },
    }


def dimension_dict(report: DimensionReport) -> dict:
    return {
        "outcome": report.outcome,
        "days": report.days,
        "campaign": report.campaign,
        "heldout_contacts": report.heldout_contacts,
        "summary": report.summary,
        "winner": report.winner,
        "margin": None
        if report.margin is None
        else {"value": report.margin[0], "low": report.margin[1], "high": report.margin[2]},
        "schemes": [
            {
                "scheme": s.scheme,
                "label": s.label,
                "cells": s.cells,
                "information_gain": s.information_gain,
                "information_gain_interval": _interval(s.information_interval),
                "cramers_v": s.cramers_v,
                "cramers_v_interval": _interval(s.v_interval),
                "best_cell": s.best_cell,
                "best_cell_lift": s.best_lift,
                "best_cell_lift_interval": _interval(s.lift_interval),
            }
            for s in report.schemes
        ],
    }
