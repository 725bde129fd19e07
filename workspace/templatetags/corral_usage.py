"""Token counts and costs as pages show them."""

from decimal import Decimal
from typing import Any

from django import template

register = template.Library()


@register.filter
def tokens(value: Any) -> str:
    """12,345,678 tokens: a comma every three digits."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "0"


@register.simple_tag
def cost(value: Decimal | None) -> str:
    """Dollars to the cent (to a hundredth of a cent below one cent), or why not."""
    if value is None:
        return "unpriced model"
    if 0 < value < Decimal("0.01"):
        return f"${value:.4f}"
    return f"${value:,.2f}"


@register.filter
def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"
