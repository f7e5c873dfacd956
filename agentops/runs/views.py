from functools import partial

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from agentops.agents.models import Agent
from agentops.pagination import paginate
from agentops.teams.access import (
    get_for_team,
    require_admin,
    require_editor,
    require_reviewer,
    require_viewer,
    team_queryset,
)

from . import services
from .forms import (
    CompareForm,
    DecisionForm,
    RerunForm,
    RunFilterForm,
    RunStartForm,
    TeamBudgetForm,
)
from .models import Run, Step, StepStatus


@require_viewer
def run_list(request):
    form = RunFilterForm(request.GET or None, team=request.team)
    # A workflow's run is listed as the workflow's, with its lead agent.
    runs = form.filter(
        team_queryset(request, Run).select_related(
            "agent", "agent_version", "workflow_run__workflow"
        )
    )
    page = paginate(request, runs)
    template = "runs/list.html#runs" if request.htmx else "runs/list.html"
    # While a run on this page is still going, the list refreshes itself.
    live = any(run.is_active for run in page.object_list)
    return render(request, template, {"form": form, "page": page, "live": live})


def _run_context(run):
    # An agent's run reads in the order things happened (a draft, its grade, the revision);
    # a workflow's, thread by thread (its thread tree shows them side by side).
    order = ("thread_id", "sequence") if run.in_workflow else ("pk",)
    steps = list(run.steps.select_related("decision_by", "thread").order_by(*order))
    from agentops.outcomes.models import Evaluation

    evaluation = (
        Evaluation.objects.select_related("rubric_version__rubric")
        .prefetch_related("iterations")
        .filter(run=run)
        .first()
    )
    iterations = list(evaluation.iterations.all()) if evaluation else []
    last_graded = iterations[-1] if iterations else None
    return {
        "run": run,
        "evaluation": evaluation,
        "last_graded": last_graded,
        # A revision not graded (yet, or ever: the run ended first) is the output shown, so
        # the score is not for it.
        "ungraded_output": last_graded is not None
        and bool(run.output.strip())
        and last_graded.output.strip() != run.output.strip(),
        "steps": steps,
        "awaiting": [s for s in steps if s.status == StepStatus.AWAITING_APPROVAL],
        "rate_waiting": next((s for s in steps if s.rate_limit_wait_until), None),
        "rerun_form": RerunForm(),
        "compare_form": CompareForm(initial={"a": run.pk}),
    }


@require_viewer
def run_detail(request, pk):
    run = get_for_team(
        request,
        Run.objects.select_related(
            "agent", "agent_version", "created_by", "workflow_run__workflow"
        ),
        pk=pk,
    )
    # The live region polls this view while the run is active; it gets the fragment only.
    template = "runs/detail.html#live" if request.htmx else "runs/detail.html"
    return render(request, template, _run_context(run))


@require_editor
def run_start(request, agent_pk):
    agent = get_for_team(request, Agent, pk=agent_pk)
    form = RunStartForm(request.POST or None, team=request.team)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        start = services.run_start
        if data["rubric"] is not None:
            from agentops.outcomes.loop import run_start_graded

            start = partial(run_start_graded, rubric=data["rubric"])
        try:
            run = start(
                agent=agent,
                input=data["input"],
                actor=request.user,
                budget_tokens=data["budget_tokens"],
                budget_cost_usd=data["budget_cost_usd"],
                max_turns=data["max_turns"],
                max_continuations=data["max_continuations"],
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Run {run.pk} started.")
            return redirect("runs:detail", pk=run.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "runs/start.html", {"agent": agent, "form": form}, status=status)


@require_editor
@require_POST
def run_cancel(request, pk):
    run = get_for_team(request, Run, pk=pk)
    try:
        services.run_cancel(run=run, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Run {run.pk} cancelled.")
    return redirect("runs:detail", pk=run.pk)


@require_editor
@require_POST
def run_rerun(request, pk):
    run = get_for_team(request, Run.objects.select_related("agent"), pk=pk)
    form = RerunForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose the same or the latest version.")
        return redirect("runs:detail", pk=run.pk)
    try:
        new_run = services.run_rerun(
            run=run,
            actor=request.user,
            latest_version=form.cleaned_data["version"] == "latest",
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("runs:detail", pk=run.pk)
    messages.success(request, f"Run {new_run.pk} started as a rerun of run {run.pk}.")
    if getattr(new_run, "workflow_run", None) is not None:
        return redirect("workflows:run", pk=new_run.pk)  # a workflow's run is watched as a tree
    return redirect("runs:detail", pk=new_run.pk)


@require_reviewer
def step_approval(request, pk):
    """The approval screen for one "always ask" tool call."""
    step = get_object_or_404(
        Step.objects.select_related("run__agent", "decision_by").filter(run__team=request.team),
        pk=pk,
    )
    form = DecisionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        approve = form.cleaned_data["decision"] == "approve"
        try:
            services.step_decide(
                step=step, actor=request.user, approve=approve, message=form.cleaned_data["message"]
            )
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            verb = "Approved" if approve else "Denied"
            messages.success(request, f"{verb} the call to {step.tool_name}.")
        return redirect("runs:detail", pk=step.run_id)
    status = 400 if request.method == "POST" else 200
    return render(request, "runs/approval.html", {"step": step, "form": form}, status=status)


@require_viewer
def run_compare(request):
    form = CompareForm(request.GET or None)
    pair = []
    if form.is_valid():
        # A number typed into the form that is not one of the team's runs is a field error,
        # not a 404 page: the reader stays on the form.
        runs = (
            team_queryset(request, Run)
            .select_related("agent", "agent_version", "evaluation__rubric_version__rubric")
            .in_bulk([form.cleaned_data["a"], form.cleaned_data["b"]])
        )
        for field in ("a", "b"):
            if form.cleaned_data[field] not in runs:
                form.add_error(field, f"There is no run #{form.cleaned_data[field]} in this team.")
        if form.is_valid():
            pair = [runs[form.cleaned_data["a"]], runs[form.cleaned_data["b"]]]
    status = 400 if request.GET and not form.is_valid() else 200
    return render(request, "runs/compare.html", {"form": form, "pair": pair}, status=status)


def _budget_page(request, *, form=None, status=200):
    state = services.team_budget_state(request.team)
    if form is None:
        budget = state["budget"]
        form = TeamBudgetForm(
            initial={
                "monthly_tokens": budget and budget.monthly_tokens,
                "monthly_cost_usd": budget and budget.monthly_cost_usd,
            }
        )
    return render(request, "runs/budget.html", {**state, "form": form}, status=status)


@require_viewer
def team_budget(request):
    if request.method == "POST":
        return _team_budget_save(request)
    return _budget_page(request)


@require_admin
def _team_budget_save(request):
    # Posted to the page's own address, so reloading after an error shows the page again.
    form = TeamBudgetForm(request.POST)
    if not form.is_valid():
        return _budget_page(request, form=form, status=400)
    services.team_budget_save(team=request.team, actor=request.user, **form.cleaned_data)
    if any(value is not None for value in form.cleaned_data.values()):
        messages.success(request, "Monthly budget saved. Runs follow it from their next call.")
    else:
        messages.success(request, "Monthly budget removed: only each run's own budget applies.")
    return redirect("runs:budget")
