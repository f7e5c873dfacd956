import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value):
    """Tool input as the model sent it: indented JSON (escaped by the template as usual)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@register.inclusion_tag("runs/_budget_used_up.html")
def team_budget_warning(team):
    """Beside a form that starts model work: the team's monthly budget is used up, so what
    it starts would stop before its first model call."""
    from agentops.runs.services import team_budget_stop_reason

    return {"reason": team_budget_stop_reason(team)}
