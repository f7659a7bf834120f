"""Formatting of experiment figures: rates in percent, lifts in points, p-values, money."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def figure(value: float | None, metric: str) -> str:
    """A rate as a percentage, or revenue per contact as an amount."""
    if value is None:
        return "–"
    return f"{value:,.2f}" if metric == "revenue" else f"{value * 100:.2f}%"


@register.filter
def lift(value: float | None, metric: str) -> str:
    """A difference: percentage points for rates, an amount per contact for revenue."""
    if value is None:
        return "–"
    return f"{value:+,.2f}" if metric == "revenue" else f"{value * 100:+.2f} pts"


@register.filter
def relative(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f}%"


@register.filter
def p_value(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


@register.filter
def get_metric(mapping: dict, key: str):
    return mapping.get(key)
