import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value):
    """Tool input as the model sent it: indented JSON (escaped by the template as usual)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
