"""Coordinates for the results page's charts (inline SVG drawn by the template, no script)."""

from __future__ import annotations

from dataclasses import dataclass

from activation.experiment_models import Arm, Metric
from activation.experiment_results import Results

WIDTH, LABEL, ROW = 640, 200, 28


@dataclass
class Bar:
    label: str
    y: int
    low: float  # x of the interval's ends and of the estimate
    high: float
    x: float
    text: str


@dataclass
class Chart:
    title: str
    height: int
    zero: float
    bars: list[Bar]
    scale_low: str
    scale_high: str


def _fmt(value: float, metric: str) -> str:
    return f"{value:+,.2f}" if metric == Metric.REVENUE else f"{value * 100:+.1f} pts"


def lift_chart(results: Results) -> Chart | None:
    """Lift of segment-specific over generic on the primary metric, per slice, with its 95% interval."""
    metric = results.experiment.metric
    points = []
    for s in results.slices:
        row = next(r for r in s.metrics[metric] if r.arm == Arm.SPECIFIC)
        d = row.versus_generic
        if d is None or d.absolute.value is None or d.absolute.low is None or d.absolute.high is None:
            continue
        points.append((s.name, d.absolute.value, d.absolute.low, d.absolute.high))
    if not points:
        return None
    lowest = min(0.0, *(p[2] for p in points))
    highest = max(0.0, *(p[3] for p in points))
    span = (highest - lowest) or 1.0
    plot = WIDTH - LABEL - 20

    def x(value: float) -> float:
        return round(LABEL + (value - lowest) / span * plot, 1)

    bars = [
        Bar(
            name,
            20 + i * ROW,
            x(low),
            x(high),
            x(value),
            f"{_fmt(value, metric)} [{_fmt(low, metric)}, {_fmt(high, metric)}]",
        )
        for i, (name, value, low, high) in enumerate(points)
    ]
    return Chart(
        title=f"Lift of segment-specific over generic: {Metric(metric).label.lower()}",
        height=30 + len(bars) * ROW,
        zero=x(0.0),
        bars=bars,
        scale_low=_fmt(lowest, metric),
        scale_high=_fmt(highest, metric),
    )
