from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def percent(value, places=1):
    """0.825 -> "82.5%"; empty for None."""
    if value is None or value == "":
        return ""
    return f"{Decimal(str(value)) * 100:.{int(places)}f}%"
