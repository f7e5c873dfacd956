from django.conf import settings

from agentops.navigation import SECTIONS, current_section

from .models import Membership


def current_team(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"embedded_default": settings.EMBEDDED}
    return {
        "team": getattr(request, "team", None),
        "membership": getattr(request, "membership", None),
        "my_memberships": Membership.objects.select_related("team").filter(user=user),
        "embedded_default": settings.EMBEDDED,
        "nav_sections": SECTIONS,
        "current_section": current_section(request),
    }
