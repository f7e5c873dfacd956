from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from agentops.navigation import SECTIONS
from agentops.pagination import paginate

from . import services
from .access import get_for_team, require_admin, require_viewer, team_queryset
from .forms import AuditFilterForm, MemberAddForm, MemberRoleForm, TeamSettingsForm
from .middleware import SESSION_KEY
from .models import AuditEvent, Membership


@login_required
def home(request):
    if request.membership is None:
        return render(request, "teams/no_team.html", status=200)
    return render(request, "teams/home.html", {"sections": SECTIONS[:-1]})


@login_required
@require_POST
def team_switch(request):
    membership = (
        Membership.objects.filter(user=request.user, team_id=request.POST.get("team"))
        .select_related("team")
        .first()
    )
    if membership is None:
        messages.error(request, "You are not a member of that team.")
    else:
        request.session[SESSION_KEY] = membership.team_id
        services.team_chosen(membership=membership)
        messages.success(request, f"Now working in {membership.team}.")
    next_url = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = "home"
    return redirect(next_url)


@require_viewer
def members(request):
    memberships = team_queryset(request, Membership).select_related("user")
    return render(
        request,
        "teams/members.html",
        {
            "memberships": memberships,
            "add_form": MemberAddForm(),
            "role_form": MemberRoleForm(),
        },
    )


@require_admin
@require_POST
def member_add(request):
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            services.membership_add(
                team=request.team,
                actor_membership=request.membership,
                user=form.cleaned_data["username"],
                role=form.cleaned_data["role"],
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Added {form.cleaned_data['username']}.")
            return redirect("teams:members")
    memberships = team_queryset(request, Membership).select_related("user")
    return render(
        request,
        "teams/members.html",
        {
            "memberships": memberships,
            "add_form": form,
            "role_form": MemberRoleForm(),
        },
        status=400,
    )


@require_admin
@require_POST
def member_role(request, pk):
    membership = get_for_team(request, Membership, pk=pk)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the listed roles.")
        return redirect("teams:members")
    try:
        services.membership_change_role(
            membership=membership,
            actor_membership=request.membership,
            role=form.cleaned_data["role"],
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"{membership.user} is now {membership.get_role_display()}.")
    return redirect("teams:members")


@require_admin
@require_POST
def member_remove(request, pk):
    membership = get_for_team(request, Membership, pk=pk)
    try:
        services.membership_remove(membership=membership, actor_membership=request.membership)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Removed {membership.user} from {request.team}.")
    return redirect("teams:members")


@require_admin
def audit_log(request):
    form = AuditFilterForm(request.GET or None, team=request.team)
    events = form.filter(team_queryset(request, AuditEvent).select_related("actor"))
    page = paginate(request, events)
    template = "teams/audit.html#events" if request.htmx else "teams/audit.html"
    return render(request, template, {"form": form, "page": page})


@require_viewer
def team_settings(request):
    if request.method == "POST":
        return _team_settings_save(request)
    form = TeamSettingsForm(initial={"name": request.team.name})
    return render(request, "teams/settings.html", {"form": form})


@require_admin
def _team_settings_save(request):
    # Posted to the page's own address, so reloading after an error shows the page again.
    form = TeamSettingsForm(request.POST)
    if form.is_valid():
        services.team_rename(team=request.team, actor=request.user, name=form.cleaned_data["name"])
        messages.success(request, "Team settings saved.")
        return redirect("teams:settings")
    return render(request, "teams/settings.html", {"form": form}, status=400)


def healthz(request):
    """Liveness for the container health check: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")
