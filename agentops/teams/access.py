"""Team scoping for every view that reads team data.

`request.team` and `request.membership` are set by CurrentTeamMiddleware. Another team's
object is a 404 (we do not confirm it exists); a missing permission is a 403.
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from .models import Role


def require_member(minimum=Role.VIEWER):
    """Log-in, a membership in the current team, and at least `minimum` role."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = request.membership
            if membership is None:
                raise PermissionDenied("You are not a member of any team yet.")
            if not membership.has_role(minimum):
                raise PermissionDenied(
                    f"This needs the {Role(minimum).label.lower()} role or higher; "
                    f"you are {Role(membership.role).label.lower()}."
                )
            return view(request, *args, **kwargs)

        wrapper.minimum_role = Role(minimum)
        return wrapper

    return decorator


require_viewer = require_member(Role.VIEWER)
require_reviewer = require_member(Role.REVIEWER)
require_editor = require_member(Role.EDITOR)
require_admin = require_member(Role.ADMIN)
require_owner = require_member(Role.OWNER)


def team_queryset(request, model_or_queryset):
    """Rows of the current team only."""
    queryset = getattr(model_or_queryset, "objects", model_or_queryset)
    return queryset.filter(team=request.team)


def get_for_team(request, model_or_queryset, **lookup):
    """One row of the current team, or 404 (also for another team's row)."""
    return get_object_or_404(team_queryset(request, model_or_queryset), **lookup)
