from django.db.models import F

from .models import Membership

SESSION_KEY = "current_team_id"


def current_membership(request):
    """The membership of the team chosen in the session, else of the team the user last
    switched to, else of their first team by name."""
    if not request.user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("team").filter(user=request.user)
    chosen = request.session.get(SESSION_KEY)
    membership = memberships.filter(team_id=chosen).first() if chosen is not None else None
    if membership is None:
        membership = memberships.order_by(
            F("last_chosen_at").desc(nulls_last=True), "team__name"
        ).first()
        if membership is not None:
            request.session[SESSION_KEY] = membership.team_id
    return membership


class CurrentTeamMiddleware:
    """Sets request.membership and request.team for every request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.membership = current_membership(request)
        request.team = request.membership.team if request.membership else None
        return self.get_response(request)
