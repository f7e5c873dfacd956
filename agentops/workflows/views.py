from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Max, Min, Q, Sum
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from agentops.outcomes.models import Evaluation
from agentops.pagination import paginate
from agentops.runs.models import Run, StepKind, StepStatus, Thread
from agentops.teams.access import get_for_team, require_editor, require_viewer, team_queryset

from . import services
from .delegation import thread_depth
from .forms import (
    CompareForm,
    RosterFormSet,
    ScheduleFilterForm,
    ScheduleForm,
    WorkflowFilterForm,
    WorkflowForm,
    WorkflowRunForm,
    roster_initial,
    schedule_initial,
    workflow_initial,
)
from .models import Delegation, Schedule, Workflow

# --- workflows ---------------------------------------------------------------------------------


@require_viewer
def workflow_list(request):
    form = WorkflowFilterForm(request.GET or None)
    workflows = form.filter(
        team_queryset(request, Workflow).select_related(
            "current_version", "current_version__lead_agent"
        )
    ).annotate(specialists=Count("current_version__roster"))
    # A GROUP BY query ignores Meta.ordering: pages need an explicit order.
    page = paginate(request, workflows.order_by("name", "pk"))
    template = "workflows/list.html#workflows" if request.htmx else "workflows/list.html"
    return render(request, template, {"form": form, "page": page})


def _form_values(form, formset):
    return {**form.cleaned_data, "roster": formset.specialists()}


def _apply_errors(form, formset, error):
    """Put a service's ValidationError on the fields it names; roster errors on the set."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, problems in error.message_dict.items():
        if field == "roster":
            formset.roster_errors = problems
        elif field in form.fields:
            form.add_error(field, problems)
        else:
            form.add_error(None, problems)


def _editor(request, template_context, *, workflow=None):
    version = workflow.current_version if workflow else None
    initial = workflow_initial(version) if version else None
    form = WorkflowForm(request.POST or None, team=request.team, initial=initial)
    formset = RosterFormSet(
        request.POST or None,
        team=request.team,
        prefix="roster",
        # Bound forms equal to their initial data count as unchanged (and would be skipped).
        initial=roster_initial(version) if version and request.method != "POST" else None,
    )
    formset.roster_errors = []
    if request.method == "POST":
        if form.is_valid() and formset.is_valid():
            try:
                if workflow is None:
                    workflow = services.workflow_create(
                        team=request.team, actor=request.user, **_form_values(form, formset)
                    )
                    messages.success(request, f"Created {workflow.name} (version 1).")
                else:
                    saved = services.workflow_update(
                        workflow=workflow, actor=request.user, **_form_values(form, formset)
                    )
                    if saved is None:
                        messages.info(request, "Nothing changed, so no new version was saved.")
                    else:
                        messages.success(request, f"Saved version {saved.number}.")
            except ValidationError as error:
                _apply_errors(form, formset, error)
            else:
                return redirect("workflows:detail", pk=workflow.pk)
        context = {"form": form, "formset": formset, "workflow": workflow, **template_context}
        return render(request, "workflows/form.html", context, status=400)
    context = {"form": form, "formset": formset, "workflow": workflow, **template_context}
    return render(request, "workflows/form.html", context)


@require_editor
def workflow_create(request):
    return _editor(request, {})


@require_editor
def workflow_edit(request, pk):
    workflow = get_for_team(request, Workflow.objects.select_related("current_version"), pk=pk)
    if workflow.is_archived:
        messages.error(request, "An archived workflow cannot be edited; unarchive it first.")
        return redirect("workflows:detail", pk=workflow.pk)
    return _editor(request, {}, workflow=workflow)


def _compare(request, versions):
    numbers = [version.number for version in versions]
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
    by_number = {version.number: version for version in versions}
    pair = (by_number[a], by_number[b])
    return form, pair, services.version_diff(*pair) if a != b else None


@require_viewer
def workflow_detail(request, pk):
    workflow = get_for_team(
        request,
        Workflow.objects.select_related(
            "current_version", "current_version__lead_agent", "current_version__rubric"
        ),
        pk=pk,
    )
    versions = list(
        workflow.versions.select_related("created_by", "lead_agent")
        .annotate(specialists=Count("roster"))
        .order_by("-number")
    )
    compare_form, pair, diff = _compare(request, versions)
    runs = (
        Run.objects.filter(workflow_run__workflow=workflow)
        .select_related("workflow_run__version")
        .order_by("-created_at", "-id")
    )
    context = {
        "workflow": workflow,
        "version": workflow.current_version,
        "roster": (
            list(
                workflow.current_version.roster.select_related("agent", "pinned_version", "rubric")
            )
            if workflow.current_version
            else []
        ),
        "versions": versions,
        "compare_form": compare_form,
        "pair": pair,
        "diff": diff,
        "runs": paginate(request, runs, per_page=10),
        "run_form": WorkflowRunForm(),
        "schedules": workflow.schedules.all(),
    }
    template = "workflows/detail.html#compare" if request.htmx else "workflows/detail.html"
    return render(request, template, context)


@require_viewer
def workflow_version(request, pk, number):
    workflow = get_for_team(request, Workflow, pk=pk)
    version = get_object_or_404(
        workflow.versions.select_related(
            "created_by", "lead_agent", "lead_pinned_version", "rubric"
        ),
        number=number,
    )
    roster = version.roster.select_related("agent", "pinned_version", "rubric")
    return render(
        request,
        "workflows/version.html",
        {"workflow": workflow, "version": version, "roster": roster},
    )


@require_editor
@require_POST
def workflow_archive(request, pk):
    workflow = get_for_team(request, Workflow, pk=pk)
    services.workflow_archive(workflow=workflow, actor=request.user)
    messages.success(request, f"Archived {workflow.name}; its schedules are paused.")
    return redirect("workflows:detail", pk=workflow.pk)


@require_editor
@require_POST
def workflow_unarchive(request, pk):
    workflow = get_for_team(request, Workflow, pk=pk)
    services.workflow_unarchive(workflow=workflow, actor=request.user)
    messages.success(request, f"Unarchived {workflow.name}.")
    return redirect("workflows:detail", pk=workflow.pk)


@require_editor
@require_POST
def workflow_run_start(request, pk):
    workflow = get_for_team(request, Workflow.objects.select_related("current_version"), pk=pk)
    form = WorkflowRunForm(request.POST)
    if form.is_valid():
        try:
            run = services.workflow_run_start(
                workflow=workflow, input=form.cleaned_data["input"], actor=request.user
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Run {run.pk} started.")
            return redirect("workflows:run", pk=run.pk)
    messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
    return redirect("workflows:detail", pk=workflow.pk)


# --- workflow runs: the live thread tree -------------------------------------------------------


def _thread_rows(run):
    """The run's threads depth-first, each with its agent, totals, grade and timing, and
    where its bar sits on the run's timeline (0..1000). A grader sits under the thread it
    grades."""
    threads = list(
        Thread.objects.filter(run=run)
        .select_related("agent_version__agent", "evaluation")
        .annotate(
            tokens_in=Sum("steps__input_tokens", filter=Q(steps__kind=StepKind.MODEL_CALL)),
            tokens_out=Sum("steps__output_tokens", filter=Q(steps__kind=StepKind.MODEL_CALL)),
            cost=Sum("steps__cost_usd", filter=Q(steps__kind=StepKind.MODEL_CALL)),
            began=Min("steps__claimed_at", filter=Q(steps__kind=StepKind.MODEL_CALL)),
            ended=Max("steps__finished_at"),
        )
        .order_by("id")
    )
    delegations = {
        d.child_id: d
        for d in Delegation.objects.filter(run=run).select_related("roster_entry__agent")
    }
    now = timezone.now()
    starts = [t.began for t in threads if t.began]
    origin = min(starts) if starts else None
    finish = max([t.ended or now for t in threads if t.began] or [now])
    span = max((finish - origin).total_seconds(), 0.001) if origin else 1
    children = {}
    for thread in threads:
        children.setdefault(thread.parent_id or thread.graded_thread_id, []).append(thread)
    rows = []

    def visit(thread, depth):
        delegation = delegations.get(thread.pk)
        begin = thread.began
        end = thread.ended if thread.status not in ("active", "waiting_children") else now
        bar = None
        if begin and origin:
            x = (begin - origin).total_seconds() / span * 1000
            width = max(((end or now) - begin).total_seconds() / span * 1000, 4)
            bar = {"x": round(x, 1), "width": round(min(width, 1000 - x), 1)}
        rows.append(
            {
                "thread": thread,
                "depth": min(depth, 5),
                "delegation": delegation,
                "evaluation": getattr(thread, "evaluation", None),
                "duration_s": (end - begin).total_seconds() if begin and end else None,
                "bar": bar,
            }
        )
        for child in children.get(thread.pk, []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        visit(root, 0)
    return rows, span if origin else None


def _workflow_run_for(request, pk):
    return get_for_team(
        request,
        Run.objects.filter(workflow_run__isnull=False).select_related(
            "agent", "workflow_run__workflow", "workflow_run__version"
        ),
        pk=pk,
    )


@require_viewer
def run_tree(request, pk):
    run = _workflow_run_for(request, pk)
    rows, span = _thread_rows(run)
    awaiting = list(
        run.steps.filter(status=StepStatus.AWAITING_APPROVAL)
        .select_related("thread__agent_version__agent")
        .order_by("id")
    )
    context = {
        "run": run,
        "workflow_run": run.workflow_run,
        "rows": rows,
        "span_s": span,
        "max_parallel_seen": _max_overlap(rows),
        "awaiting": awaiting,
        "awaiting_threads": {step.thread_id for step in awaiting},
    }
    template = "workflows/run.html#tree" if request.htmx else "workflows/run.html"
    return render(request, template, context)


def _max_overlap(rows):
    """The most sub-agent threads that were working at the same moment."""
    events = []
    for row in rows:
        if row["delegation"] is None or row["bar"] is None:
            continue
        events.append((row["bar"]["x"], 1))
        events.append((row["bar"]["x"] + row["bar"]["width"], -1))
    best = current = 0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):
        current += change
        best = max(best, current)
    return best


@require_viewer
def thread_detail(request, pk, thread_pk):
    run = _workflow_run_for(request, pk)
    thread = get_object_or_404(
        run.threads.select_related("agent_version__agent", "parent", "graded_thread"),
        pk=thread_pk,
    )
    steps = thread.steps.select_related("decision_by").order_by("sequence")
    delegation = (
        Delegation.objects.filter(child=thread).select_related("roster_entry__agent").first()
    )
    children = Delegation.objects.filter(parent=thread).select_related(
        "roster_entry__agent", "child"
    )
    context = {
        "run": run,
        "thread": thread,
        "steps": steps,
        "delegation": delegation,
        "children": children,
        "depth": thread_depth(thread),
        "evaluation": Evaluation.objects.filter(thread_id=thread.graded_thread_id or thread.pk)
        .select_related("rubric_version__rubric")
        .first(),
    }
    return render(request, "workflows/thread.html", context)


@require_editor
@require_POST
def thread_cancel(request, pk, thread_pk):
    run = _workflow_run_for(request, pk)
    thread = get_object_or_404(run.threads, pk=thread_pk)
    try:
        services.thread_cancel(thread=thread, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        what = "the run and all its threads" if thread.parent_id is None else "that sub-agent"
        messages.success(request, f"Cancelled {what}.")
    return redirect("workflows:run", pk=run.pk)


# --- schedules ---------------------------------------------------------------------------------


@require_viewer
def schedule_list(request):
    form = ScheduleFilterForm(request.GET or None)
    schedules = form.filter(
        team_queryset(request, Schedule).select_related("workflow", "agent", "periodic_task")
    )
    page = paginate(request, schedules)
    for schedule in page.object_list:
        schedule.next_run = services.schedule_next_run(schedule)
    template = "workflows/schedules.html#schedules" if request.htmx else "workflows/schedules.html"
    return render(request, template, {"form": form, "page": page})


def _schedule_values(form):
    return dict(form.cleaned_data)


@require_editor
def schedule_create(request):
    form = ScheduleForm(request.POST or None, team=request.team, initial=_prefill(request))
    if request.method == "POST":
        if form.is_valid():
            try:
                schedule = services.schedule_create(
                    team=request.team, actor=request.user, **_schedule_values(form)
                )
            except ValidationError as error:
                _schedule_errors(form, error)
            else:
                messages.success(request, f"Created the schedule {schedule.name}.")
                return redirect("workflows:schedule", pk=schedule.pk)
        return render(request, "workflows/schedule_form.html", {"form": form}, status=400)
    return render(request, "workflows/schedule_form.html", {"form": form})


def _prefill(request):
    initial = {}
    for key in ("workflow", "agent"):
        if request.GET.get(key, "").isdigit():
            initial[key] = int(request.GET[key])
    return initial


def _schedule_errors(form, error):
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, problems in error.message_dict.items():
        form.add_error(field if field in form.fields else None, problems)


@require_viewer
def schedule_detail(request, pk):
    schedule = get_for_team(
        request, Schedule.objects.select_related("workflow", "agent", "periodic_task"), pk=pk
    )
    fires = paginate(request, schedule.fires.select_related("run"), per_page=20)
    context = {
        "schedule": schedule,
        "next_run": services.schedule_next_run(schedule),
        "fires": fires,
    }
    return render(request, "workflows/schedule.html", context)


@require_editor
def schedule_edit(request, pk):
    schedule = get_for_team(request, Schedule, pk=pk)
    form = ScheduleForm(request.POST or None, team=request.team, initial=schedule_initial(schedule))
    if request.method == "POST":
        if form.is_valid():
            try:
                services.schedule_update(
                    schedule=schedule, actor=request.user, **_schedule_values(form)
                )
            except ValidationError as error:
                _schedule_errors(form, error)
            else:
                messages.success(request, "Schedule saved.")
                return redirect("workflows:schedule", pk=schedule.pk)
        context = {"form": form, "schedule": schedule}
        return render(request, "workflows/schedule_form.html", context, status=400)
    return render(request, "workflows/schedule_form.html", {"form": form, "schedule": schedule})


@require_editor
@require_POST
def schedule_pause(request, pk):
    schedule = get_for_team(request, Schedule, pk=pk)
    services.schedule_pause(schedule=schedule, actor=request.user)
    messages.success(request, f"Paused {schedule.name}.")
    return redirect("workflows:schedule", pk=schedule.pk)


@require_editor
@require_POST
def schedule_resume(request, pk):
    schedule = get_for_team(request, Schedule, pk=pk)
    try:
        services.schedule_resume(schedule=schedule, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Resumed {schedule.name}.")
    return redirect("workflows:schedule", pk=schedule.pk)


@require_editor
@require_POST
def schedule_delete(request, pk):
    schedule = get_for_team(request, Schedule, pk=pk)
    services.schedule_delete(schedule=schedule, actor=request.user)
    messages.success(request, f"Deleted the schedule {schedule.name}.")
    return redirect("workflows:schedules")
