"""Server-drawn SVG charts for the segment page: size over time, joins and leaves per day.

Plain SVG with axes, gridlines, value ticks and date labels; no script, readable in a screenshot.
"""

import math
from dataclasses import dataclass
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 44


@dataclass(frozen=True)
class Frame:
    days: list[date]
    low: float
    high: float
    bands: bool = False  # bar charts: each day is a band, labelled at its centre

    @property
    def plot_width(self) -> float:
        return WIDTH - LEFT - RIGHT

    @property
    def plot_height(self) -> float:
        return HEIGHT - TOP - BOTTOM

    def x(self, index: int) -> float:
        if self.bands:
            return LEFT + self.plot_width * (index + 0.5) / len(self.days)
        if len(self.days) == 1:
            return LEFT + self.plot_width / 2
        return LEFT + self.plot_width * index / (len(self.days) - 1)

    def y(self, value: float) -> float:
        span = (self.high - self.low) or 1
        return TOP + self.plot_height * (1 - (value - self.low) / span)


def nice_ticks(low: float, high: float, *, count: int = 5) -> list[float]:
    """Round tick values covering low..high (1, 2 or 5 times a power of ten apart, at least 1:
    the charts count contacts)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = max(1, next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 0.001:
        ticks.append(round(value, 6))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 6))
    return ticks


def _number(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:,.0f}k"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _axes(frame: Frame, ticks: list[float], y_label: str) -> list[str]:
    parts = []
    for tick in ticks:
        y = frame.y(tick)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{_number(abs(tick))}</text>')
    bottom = TOP + frame.plot_height
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}"/>')
    label_every = max(1, math.ceil(len(frame.days) / 8))
    for index, day in enumerate(frame.days):
        if index % label_every and index != len(frame.days) - 1:
            continue
        if index != len(frame.days) - 1 and len(frame.days) - 1 - index < label_every * 0.6:
            continue  # keep the last label clear of its neighbour
        x = frame.x(index)
        anchor = "end" if index == len(frame.days) - 1 and not frame.bands else "middle"
        parts.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="{anchor}">{day:%-d %b}</text>')
    parts.append(
        f'<text x="14" y="{TOP + frame.plot_height / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + frame.plot_height / 2:.1f})">{escape(y_label)}</text>'
    )
    parts.append(
        f'<text x="{LEFT + frame.plot_width / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
        f"{frame.days[0]:%-d %b %Y} – {frame.days[-1]:%-d %b %Y}</text>"
    )
    return parts


def _svg(parts: list[str], label: str) -> SafeString:
    body = "".join(parts)
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>{body}</svg>"
    )


def line_chart(days: list[date], values: list[int], *, label: str, y_label: str) -> SafeString:
    ticks = nice_ticks(0, max(values, default=0) or 1)
    frame = Frame(days, ticks[0], ticks[-1])
    points = " ".join(f"{frame.x(i):.1f},{frame.y(v):.1f}" for i, v in enumerate(values))
    bottom = TOP + frame.plot_height
    area = f"{frame.x(0):.1f},{bottom} {points} {frame.x(len(values) - 1):.1f},{bottom}"
    parts = _axes(frame, ticks, y_label)
    parts.append(f'<polygon class="area" points="{area}"/>')
    parts.append(f'<polyline class="line" points="{points}"/>')
    last_x, last_y = frame.x(len(values) - 1), frame.y(values[-1])
    parts.append(f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="3.5" fill="#2f5bd3"/>')
    parts.append(
        f'<text x="{last_x - 6:.1f}" y="{max(TOP + 10, last_y - 8):.1f}" text-anchor="end" class="value-label">'
        f"{values[-1]:,}</text>"
    )
    return _svg(parts, label)


def diverging_bars(days: list[date], joins: list[int], leaves: list[int], *, label: str) -> SafeString:
    """Joins as bars above the zero line, leaves below it, one pair per day."""
    top, bottom = max(joins, default=0), max(leaves, default=0)
    up = nice_ticks(0, top, count=3) if top or not bottom else [0]
    down = nice_ticks(0, bottom, count=3) if bottom else [0]
    ticks = sorted({*(-t for t in down), *up})
    # Leave a little room on the side with no bars so the zero line does not sit on the frame.
    low = ticks[0] if bottom else -ticks[-1] * 0.1
    high = ticks[-1] if top or not bottom else -ticks[0] * 0.1
    frame = Frame(days, low, high, bands=True)
    parts = _axes(frame, ticks, "Contacts per day")
    zero = frame.y(0)
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{zero:.1f}" y2="{zero:.1f}"/>')
    slot = frame.plot_width / max(len(days), 1)
    bar = max(1.0, min(14.0, slot * 0.7))
    for index, (joined, left) in enumerate(zip(joins, leaves, strict=True)):
        x = frame.x(index) - bar / 2
        day = days[index]
        if joined:
            y = frame.y(joined)
            parts.append(
                f'<rect class="bar-join" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{zero - y:.1f}">'
                f"<title>{day:%-d %b}: {joined:,} joined</title></rect>"
            )
        if left:
            y = frame.y(-left)
            parts.append(
                f'<rect class="bar-leave" x="{x:.1f}" y="{zero:.1f}" width="{bar:.1f}" height="{y - zero:.1f}">'
                f"<title>{day:%-d %b}: {left:,} left</title></rect>"
            )
    return _svg(parts, label)
