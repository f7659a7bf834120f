"""Server-drawn SVG for the model page: lift by decile (bars) and calibration (points on the diagonal).

Plain SVG with axes, gridlines and labels, no script, readable in a screenshot.
"""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 480, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 44
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


def _svg(label: str, body: list[str]) -> SafeString:
    return mark_safe(
        f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg" font-size="11" '
        f'font-family="system-ui, sans-serif">{"".join(body)}</svg>'
    )


def _y_axis(high: float, ticks: list[float], fmt) -> list[str]:
    parts = []
    for tick in ticks:
        y = TOP + PLOT_H * (1 - tick / high)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#4b5563">{fmt(tick)}</text>')
    return parts


def _ticks(high: float) -> tuple[float, list[float]]:
    for step in (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 20, 50):
        if high / step <= 6:
            top = step * -(-high // step)
            return top, [round(step * i, 6) for i in range(round(top / step) + 1)]
    return high, [0, high]


def lift_chart(lift: list[dict]) -> SafeString:
    """Bars: each decile's lift (its outcome rate over the base rate), highest scores first."""
    high, ticks = _ticks(max([row["lift"] for row in lift] + [1.0]) * 1.05)
    parts = _y_axis(high, ticks, lambda t: f"{t:g}×")
    band = PLOT_W / max(len(lift), 1)
    for i, row in enumerate(lift):
        height = PLOT_H * row["lift"] / high
        x = LEFT + band * i + band * 0.15
        y = TOP + PLOT_H - height
        title = f"Decile {row['decile']}: lift {row['lift']:.2f}, rate {row['rate']:.1%}, {row['contacts']:,} contacts"
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{band * 0.7:.1f}" height="{height:.1f}" fill="#2563eb">'
            f"<title>{escape(title)}</title></rect>"
        )
        parts.append(
            f'<text x="{x + band * 0.35:.1f}" y="{TOP + PLOT_H + 16}" text-anchor="middle" fill="#4b5563">'
            f"{row['decile']}</text>"
        )
    one = TOP + PLOT_H * (1 - 1 / high)
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{one:.1f}" y2="{one:.1f}" '
        'stroke="#dc2626" stroke-dasharray="4 3"/>'
    )
    parts.append(
        f'<text x="{LEFT + PLOT_W / 2}" y="{HEIGHT - 6}" text-anchor="middle" fill="#111827">'
        "Decile by score (1 = highest); dashed: base rate</text>"
    )
    return _svg("Lift by decile", parts)


def calibration_chart(bins: list[dict]) -> SafeString:
    """Mean predicted probability (x) against the observed rate (y) per bin; the diagonal is perfect."""
    high, ticks = _ticks(max([b["predicted"] for b in bins] + [b["observed"] for b in bins] + [0.1]) * 1.05)
    high = min(high, 1.0) if high >= 1 else high
    parts = _y_axis(high, ticks, lambda t: f"{t:.0%}")
    for tick in ticks:
        x = LEFT + PLOT_W * tick / high
        parts.append(f'<text x="{x:.1f}" y="{TOP + PLOT_H + 16}" text-anchor="middle" fill="#4b5563">{tick:.0%}</text>')
    parts.append(
        f'<line x1="{LEFT}" y1="{TOP + PLOT_H}" x2="{LEFT + PLOT_W}" y2="{TOP}" '
        'stroke="#9ca3af" stroke-dasharray="4 3"/>'
    )
    points = []
    for b in bins:
        x = LEFT + PLOT_W * b["predicted"] / high
        y = TOP + PLOT_H * (1 - b["observed"] / high)
        points.append(f"{x:.1f},{y:.1f}")
        title = f"Predicted {b['predicted']:.1%}, observed {b['observed']:.1%}, {b['contacts']:,} contacts"
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#2563eb"><title>{escape(title)}</title></circle>')
    if points:
        parts.insert(0, f'<polyline points="{" ".join(points)}" fill="none" stroke="#2563eb" stroke-width="1.5"/>')
    parts.append(
        f'<text x="{LEFT + PLOT_W / 2}" y="{HEIGHT - 6}" text-anchor="middle" fill="#111827">'
        "Predicted probability → observed rate (dashed: perfect calibration)</text>"
    )
    return _svg("Calibration curve", parts)
