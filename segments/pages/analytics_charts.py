"""Server-drawn SVG charts for segment analytics: intervals beside a baseline, rates over time with
their interval band, size over time with annotations, and the overlap heat map.

Every chart has labelled axes with units; intervals are drawn, never left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from segments.analytics.wilson import Estimate

from .charts import nice_ticks

COLOURS = {"high": "#1a7f4b", "low": "#c0392b", "": "#2f5bd3"}


def _svg(width: int, height: int, parts: list[str], label: str, *, grow: bool = True) -> SafeString:
    """The chart; `grow=False` keeps it at most its drawn size (a small heat map is not blown up)."""
    style = "" if grow else f' style="max-width: {width}px"'
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}"{style}>'
        f"<title>{escape(label)}</title>{''.join(parts)}</svg>"
    )


def format_value(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value * 100:.1f}%" if value < 0.1 and value else f"{value * 100:.0f}%"
    if unit == "$":
        return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"
    return f"{value:,.0f}"


def interval_text(value: float, low: float, high: float, unit: str) -> str:
    return f"{format_value(value, unit)} (95% interval {format_value(low, unit)}–{format_value(high, unit)})"


def rate_ticks(high: float, unit: str) -> list[float]:
    if unit == "%":
        top = max(high, 0.01)
        return [t / 100 for t in nice_ticks(0, top * 100, count=4)] if top >= 0.05 else _small_ticks(top)
    return nice_ticks(0, max(high, 1), count=4)


def _small_ticks(top: float) -> list[float]:
    step = 10 ** math.floor(math.log10(top / 4))
    step = next(m * step for m in (1, 2, 5, 10) if m * step * 4 >= top)
    return [round(step * n, 10) for n in range(5)]


@dataclass(frozen=True)
class Row:
    label: str
    estimate: Estimate
    flag: str = ""


def forest(rows: list[Row], baseline: Estimate, *, label: str, unit: str, axis: str) -> SafeString:
    """One point and whisker per segment on a shared axis, with the database's value as a dashed line."""
    left, right, top, row_h, bottom = 180, 24, 26, 22, 40
    width, height = 560, top + row_h * max(len(rows), 1) + bottom
    values = [v for r in rows for v in (r.estimate.high, r.estimate.value) if v is not None]
    ticks = rate_ticks(max([*values, baseline.high or 0, baseline.value or 0, 0]), unit)
    span = ticks[-1] or 1

    def x(value: float) -> float:
        return left + (width - left - right) * value / span

    plot_bottom = top + row_h * max(len(rows), 1)
    parts = []
    for tick in ticks:
        parts.append(f'<line class="grid" x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top}" y2="{plot_bottom}"/>')
        parts.append(
            f'<text x="{x(tick):.1f}" y="{plot_bottom + 14}" text-anchor="middle">{format_value(tick, unit)}</text>'
        )
    parts.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{plot_bottom}" y2="{plot_bottom}"/>')
    parts.append(
        f'<text x="{(left + width - right) / 2:.1f}" y="{height - 6}" text-anchor="middle">{escape(axis)}</text>'
    )
    if baseline.value is not None:
        bx = x(baseline.value)
        parts.append(
            f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{top - 6}" y2="{plot_bottom}" '
            'stroke="#444" stroke-dasharray="4 3"/>'
        )
        parts.append(
            f'<text x="{bx:.1f}" y="{top - 10}" text-anchor="middle" class="value-label">'
            f"database {format_value(baseline.value, unit)}</text>"
        )
    for index, row in enumerate(rows):
        y = top + row_h * index + row_h / 2
        name = row.label if len(row.label) <= 26 else row.label[:25] + "…"
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(name)}</text>')
        found = row.estimate.interval()
        if found is None:
            parts.append(f'<text x="{left + 4}" y="{y + 4:.1f}">no members</text>')
            continue
        value, low, high = found
        colour = COLOURS[row.flag]
        tip = f"{row.label}: {interval_text(value, low, high, unit)}"
        parts.append(
            f"<g><title>{escape(tip)}</title>"
            f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-width="2"/>'
            f'<line x1="{x(low):.1f}" x2="{x(low):.1f}" y1="{y - 5:.1f}" y2="{y + 5:.1f}" stroke="{colour}"/>'
            f'<line x1="{x(high):.1f}" x2="{x(high):.1f}" y1="{y - 5:.1f}" y2="{y + 5:.1f}" stroke="{colour}"/>'
            f'<circle cx="{x(value):.1f}" cy="{y:.1f}" r="4" fill="{colour}"/></g>'
        )
    return _svg(width, height, parts, label)


def series(labels: list[str], estimates: list[Estimate], *, label: str, unit: str, y_label: str) -> SafeString:
    """A rate per period as a line, its 95% interval as a band around it."""
    width, height, left, right, top, bottom = 560, 240, 64, 16, 16, 44
    points = [(i, found) for i, e in enumerate(estimates) if (found := e.interval()) is not None]
    ticks = rate_ticks(max([high for _, (_, _, high) in points] or [0]), unit)
    span = ticks[-1] or 1
    n = max(len(labels), 1)

    def x(index: int) -> float:
        return left + (width - left - right) * (index + 0.5) / n

    def y(value: float) -> float:
        return top + (height - top - bottom) * (1 - value / span)

    bottom_y = height - bottom
    parts = []
    for tick in ticks:
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>')
        parts.append(f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{format_value(tick, unit)}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{bottom_y}" y2="{bottom_y}"/>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{bottom_y}"/>')
    every = max(1, math.ceil(n / 8))
    for index, text in enumerate(labels):
        if index % every == 0:
            parts.append(f'<text x="{x(index):.1f}" y="{bottom_y + 16}" text-anchor="middle">{escape(text)}</text>')
    middle = top + (height - top - bottom) / 2
    parts.append(
        f'<text x="14" y="{middle:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {middle:.1f})">{escape(y_label)}</text>'
    )
    if points:
        upper = " ".join(f"{x(i):.1f},{y(high):.1f}" for i, (_, _, high) in points)
        lower = " ".join(f"{x(i):.1f},{y(low):.1f}" for i, (_, low, _) in reversed(points))
        parts.append(f'<polygon class="area" points="{upper} {lower}"><title>95% interval</title></polygon>')
        line = " ".join(f"{x(i):.1f},{y(value):.1f}" for i, (value, _, _) in points)
        parts.append(f'<polyline class="line" points="{line}"/>')
        for i, (value, low, high) in points:
            tip = f"{labels[i]}: {format_value(value, unit)} ({format_value(low, unit)}–{format_value(high, unit)})"
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" fill="#2f5bd3">'
                f"<title>{escape(tip)}</title></circle>"
            )
    else:
        parts.append(f'<text x="{width / 2}" y="{middle:.1f}" text-anchor="middle">not computed yet</text>')
    return _svg(width, height, parts, label)


@dataclass(frozen=True)
class Mark:
    day: date
    kind: str  # "rule", "import", "failure"
    text: str


MARK_COLOURS = {"rule": "#7b4fd0", "import": "#b7791f", "failure": "#c0392b"}


def size_with_marks(days: list[date], sizes: list[int], marks: list[Mark], *, label: str) -> SafeString:
    """Members per day with a vertical marker on each day a rule was edited, contacts were imported
    or a refresh failed."""
    width, height, left, right, top, bottom = 560, 240, 64, 16, 24, 44
    ticks = nice_ticks(0, max(sizes, default=0) or 1)
    span = ticks[-1] or 1
    n = max(len(days) - 1, 1)

    def x(index: float) -> float:
        return left + (width - left - right) * index / n

    def y(value: float) -> float:
        return top + (height - top - bottom) * (1 - value / span)

    bottom_y = height - bottom
    parts = []
    for tick in ticks:
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>')
        parts.append(f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{format_value(tick, "")}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{bottom_y}" y2="{bottom_y}"/>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{bottom_y}"/>')
    every = max(1, math.ceil(len(days) / 7))
    for index, day in enumerate(days):
        if index % every == 0:
            parts.append(f'<text x="{x(index):.1f}" y="{bottom_y + 16}" text-anchor="middle">{day:%-d %b}</text>')
    parts.append(
        f'<text x="{(left + width - right) / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        f"{days[0]:%-d %b %Y} – {days[-1]:%-d %b %Y} (members at the end of each day)</text>"
    )
    middle = top + (height - top - bottom) / 2
    parts.append(
        f'<text x="14" y="{middle:.1f}" text-anchor="middle" transform="rotate(-90 14 {middle:.1f})">Members</text>'
    )
    index_of = {day: i for i, day in enumerate(days)}
    for mark in marks:
        if mark.day not in index_of:
            continue
        mx = x(index_of[mark.day])
        colour = MARK_COLOURS[mark.kind]
        parts.append(
            f'<g class="mark mark-{mark.kind}"><title>{mark.day:%-d %b}: {escape(mark.text)}</title>'
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top - 8}" y2="{bottom_y}" '
            f'stroke="{colour}" stroke-dasharray="3 2"/>'
            f'<rect x="{mx - 4:.1f}" y="{top - 14}" width="8" height="8" fill="{colour}"/></g>'
        )
    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(sizes))
    parts.append(f'<polyline class="line" points="{line}"/>')
    return _svg(width, height, parts, label)


def heat_map(names: list[str], jaccard: list[list[float | None]], shared: list[list[int]], *, label: str) -> SafeString:
    """Jaccard overlap of every pair as a shaded grid (darker = more overlap), shared members on hover."""
    cell = 34 if len(names) <= 12 else 22
    left, top = 170, 120
    width, height = left + cell * len(names) + 150, top + cell * len(names) + 20
    parts = []
    for j, name in enumerate(names):
        short = name if len(name) <= 22 else name[:21] + "…"
        cx = left + cell * j + cell / 2
        parts.append(
            f'<text x="{cx:.1f}" y="{top - 6}" transform="rotate(-50 {cx:.1f} {top - 6})">{escape(short)}</text>'
        )
    for i, name in enumerate(names):
        short = name if len(name) <= 24 else name[:23] + "…"
        cy = top + cell * i + cell / 2
        parts.append(f'<text x="{left - 6}" y="{cy + 4:.1f}" text-anchor="end">{escape(short)}</text>')
        for j in range(len(names)):
            value = jaccard[i][j]
            shade = 0 if value is None else value
            fill = f"rgba(47, 91, 211, {0.06 + 0.94 * shade:.3f})"
            tip = f"{names[i]} ∩ {names[j]}: {shared[i][j]:,} shared members, Jaccard {shade:.3f}"
            parts.append(
                f'<g><title>{escape(tip)}</title><rect x="{left + cell * j}" y="{top + cell * i}" width="{cell - 1}" '
                f'height="{cell - 1}" fill="{fill}"/>'
            )
            if cell >= 30:
                colour = "#fff" if shade > 0.5 else "#1d2433"
                parts.append(
                    f'<text x="{left + cell * j + cell / 2:.1f}" y="{top + cell * i + cell / 2 + 4:.1f}" '
                    f'text-anchor="middle" style="fill: {colour}; font-size: 10px">{shade:.2f}</text>'
                )
            parts.append("</g>")
    lx = left + cell * len(names) + 24
    for step in range(6):
        value = step / 5
        parts.append(
            f'<rect x="{lx}" y="{top + step * 18}" width="14" height="14" '
            f'fill="rgba(47, 91, 211, {0.06 + 0.94 * value:.3f})"/>'
            f'<text x="{lx + 20}" y="{top + step * 18 + 11}">{value:.1f}</text>'
        )
    parts.append(f'<text x="{lx}" y="{top - 10}">Jaccard index</text>')
    return _svg(width, height, parts, label, grow=False)
