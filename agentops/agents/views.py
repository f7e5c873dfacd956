from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from agentops.pagination import paginate
from agentops.teams.access import (
    get_for_team,
    require_admin,
    require_editor,
    require_viewer,
    team_queryset,
)
from agentops.workflows.services import workflows_using_agent

from . import services
from .diff import version_diff
from .forms import AgentFilterForm, AgentForm, AllowlistEntryForm, CompareForm, WebhookToolForm
from .models import Agent, HostAllowlistEntry, WebhookTool
from .tools import registry


@require_viewer
def agent_list(request):
    form = AgentFilterForm(request.GET or None)
    agents = form.filter(team_queryset(request, Agent).select_related("current_version"))
    page = paginate(request, agents)
    archived_count = 0
    if not page.object_list:
        archived_count = team_queryset(request, Agent).filter(archived_at__isnull=False).count()
    template = "agents/list.html#agents" if request.htmx else "agents/list.html"
    context = {"form": form, "page": page, "archived_count": archived_count}
    return render(request, template, context)


@require_editor
def agent_create(request):
    form = AgentForm(request.POST or None, team=request.team)
    if request.method == "POST":
        if form.is_valid():
            try:
                agent = services.agent_create(
                    team=request.team, actor=request.user, **form.agent_values()
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, f"Created {agent.name} (version 1).")
                return redirect("agents:detail", pk=agent.pk)
        return render(request, "agents/form.html", {"form": form}, status=400)
    return render(request, "agents/form.html", {"form": form})


def _compare(request, agent):
    """The compare form and, when two different versions are chosen, their diff."""
    numbers = list(agent.versions.order_by("-number").values_list("number", flat=True))
    if len(numbers) < 2:
        return None, None, None
    data = request.GET if "a" in request.GET or "b" in request.GET else None
    initial = {"a": numbers[1], "b": numbers[0]}
    form = CompareForm(data, numbers=numbers, initial=initial)
    if data is None:
        a, b = initial["a"], initial["b"]
    elif form.is_valid():
        a, b = form.cleaned_data["a"], form.cleaned_data["b"]
    else:
        return form, None, None
    by_number = {v.number: v for v in agent.versions.filter(number__in=[a, b])}
    pair = (by_number[a], by_number[b])
    return form, pair, version_diff(*pair) if a != b else None


@require_viewer
def agent_detail(request, pk):
    agent = get_for_team(request, Agent.objects.select_related("current_version"), pk=pk)
    history = paginate(request, agent.versions.select_related("created_by").order_by("-number"))
    compare_form, pair, diff = _compare(request, agent)
    context = {
        "agent": agent,
        "version": agent.current_version,
        "history": history,
        "compare_form": compare_form,
        "pair": pair,
        "diff": diff,
        "unchanged": [d.label.lower() for d in diff or [] if not d.changed],
    }
    template = "agents/detail.html#compare" if request.htmx else "agents/detail.html"
    return render(request, template, context)


@require_viewer
def agent_version(request, pk, number):
    agent = get_for_team(request, Agent, pk=pk)
    version = get_object_or_404(agent.versions.select_related("created_by"), number=number)
    return render(request, "agents/version.html", {"agent": agent, "version": version})


@require_editor
def agent_edit(request, pk):
    agent = get_for_team(request, Agent.objects.select_related("current_version"), pk=pk)
    if agent.is_archived:
        messages.error(request, "An archived agent cannot be edited; unarchive it first.")
        return redirect("agents:detail", pk=agent.pk)
    form = AgentForm(request.POST or None, team=request.team, version=agent.current_version)
    if request.method == "POST":
        if form.is_valid():
            try:
                version = services.agent_update(
                    agent=agent, actor=request.user, **form.agent_values()
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                if version is None:
                    messages.info(request, "Nothing changed, so no new version was saved.")
                else:
                    messages.success(request, f"Saved version {version.number}.")
                return redirect("agents:detail", pk=agent.pk)
        return render(request, "agents/form.html", {"form": form, "agent": agent}, status=400)
    return render(request, "agents/form.html", {"form": form, "agent": agent})


@require_editor
@require_POST
def agent_archive(request, pk):
    agent = get_for_team(request, Agent, pk=pk)
    services.agent_archive(agent=agent, actor=request.user)
    messages.success(request, f"Archived {agent.name}. Its versions and runs are kept.")
    using = workflows_using_agent(agent)
    if using:
        names = ", ".join(workflow.name for workflow in using)
        messages.warning(
            request,
            f"{agent.name} is in the workflow{'s' if len(using) > 1 else ''} {names}: until "
            "you unarchive it or save a version without it, their runs cannot use it (a "
            "delegation to it comes back refused, and a lead cannot start).",
        )
    return redirect("agents:detail", pk=agent.pk)


@require_editor
@require_POST
def agent_unarchive(request, pk):
    agent = get_for_team(request, Agent, pk=pk)
    services.agent_unarchive(agent=agent, actor=request.user)
    messages.success(request, f"{agent.name} is active again.")
    return redirect("agents:detail", pk=agent.pk)


# --- tools -------------------------------------------------------------------------------


def _tools_context(request, allowlist_form=None):
    webhooks = team_queryset(request, WebhookTool).order_by("name")
    return {
        "builtins": registry.all(),
        "page": paginate(request, webhooks),
        "allowlist": team_queryset(request, HostAllowlistEntry).order_by("host"),
        "allowlist_form": allowlist_form or AllowlistEntryForm(),
    }


@require_viewer
def tools(request):
    return render(request, "agents/tools.html", _tools_context(request))


def _webhook_form_options(request):
    # Admins manage the allowlist, so they may add the tool's host from the tool's form.
    return {"team": request.team, "may_allow_hosts": request.membership.can_manage}


@require_editor
def webhook_create(request):
    form = WebhookToolForm(request.POST or None, **_webhook_form_options(request))
    if request.method == "POST":
        if form.is_valid():
            try:
                tool = services.webhook_tool_create(
                    team=request.team,
                    actor=request.user,
                    also_allow_host=form.host_to_allow,
                    **form.tool_values(),
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, f"Added the webhook tool {tool.name}.")
                return redirect("agents:tools")
        return render(request, "agents/webhook_form.html", {"form": form}, status=400)
    return render(request, "agents/webhook_form.html", {"form": form})


@require_editor
def webhook_edit(request, pk):
    tool = get_for_team(request, WebhookTool, pk=pk)
    form = WebhookToolForm(request.POST or None, tool=tool, **_webhook_form_options(request))
    if request.method == "POST":
        if form.is_valid():
            try:
                services.webhook_tool_update(
                    tool=tool,
                    actor=request.user,
                    also_allow_host=form.host_to_allow,
                    **form.tool_values(),
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, f"Saved the webhook tool {form.cleaned_data['name']}.")
                return redirect("agents:tools")
        context = {"form": form, "tool": tool}
        return render(request, "agents/webhook_form.html", context, status=400)
    return render(request, "agents/webhook_form.html", {"form": form, "tool": tool})


@require_editor
@require_POST
def webhook_delete(request, pk):
    tool = get_for_team(request, WebhookTool, pk=pk)
    try:
        services.webhook_tool_delete(tool=tool, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Deleted the webhook tool {tool.name}.")
    return redirect("agents:tools")


@require_admin
@require_POST
def allowlist_add(request):
    form = AllowlistEntryForm(request.POST)
    if form.is_valid():
        try:
            entry = services.allowlist_entry_add(
                team=request.team, actor=request.user, **form.cleaned_data
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Added {entry.host} to the allowlist.")
            return redirect("agents:tools")
    return render(request, "agents/tools.html", _tools_context(request, form), status=400)


@require_admin
@require_POST
def allowlist_remove(request, pk):
    entry = get_for_team(request, HostAllowlistEntry, pk=pk)
    services.allowlist_entry_remove(entry=entry, actor=request.user)
    messages.success(request, f"Removed {entry.host} from the allowlist.")
    return redirect("agents:tools")
