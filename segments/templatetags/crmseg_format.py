"""Small display filters for the product pages."""

from django import template

register = template.Library()


@register.filter
def top_share(percentile: float | None) -> str:
    """A percentile (share at or below) as the share at or above, e.g. 92.5 -> "8"; never below 1."""
    if percentile is None:
        return "—"
    return f"{max(1, round(100 - percentile)):d}"


@register.filter
def absolute(value: int | float) -> int | float:
    return abs(value)
