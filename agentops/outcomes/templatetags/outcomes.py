from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def percent(value, places=1):
    """0.825 -> "82.5%"; empty for None."""
    if value is None or value == "":
        return ""
    return f"{Decimal(str(value)) * 100:.{int(places)}f}%"


@register.filter
def points(value):
    """A difference of two fractions in percentage points: -0.0833 -> "-8.3 points"."""
    return f"{Decimal(str(value)) * 100:+.1f} points"


@register.simple_tag
def team_rubrics(team):
    """The rubrics a run of `team` may be graded by: not archived, with a version."""
    from agentops.outcomes.models import Rubric

    return Rubric.objects.gradable(team)
