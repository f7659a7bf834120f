"""Formatting for analytics figures: rates as percentages, money per contact, signed growth."""

from django import template

register = template.Library()


@register.filter
def as_unit(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "$":
        return f"{value:,.2f}"
    return f"{value:,.0f}"


@register.filter
def signed(value: int | None) -> str:
    if value is None:
        return "—"
    return f"+{value:,}" if value > 0 else f"−{abs(value):,}" if value < 0 else "0"


@register.filter
def get_item(mapping: dict, key: str):
    return mapping.get(key) if mapping else None


@register.filter
def p_value(value: float | None) -> str:
    """A p-value as people read it: '< 0.0001' rather than 3e-245."""
    if value is None:
        return "–"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"
