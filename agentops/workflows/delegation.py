"""Delegation: a workflow's lead hands sub-tasks to specialists that run as child threads.

The engine (agentops.runs.services) calls in here through its extension points:
- `delegate_tools` offers the `delegate` tool to the lead (and to sub-agents above the depth
  limit) of a workflow run;
- `delegations_start` receives a response's `delegate` calls, in the transaction that records
  that response, and creates one child thread per call at once (or refuses the call with an
  `is_error` result when a limit forbids it);
- `delegation_finished` runs when a child thread ends, under the parent thread's row lock:
  its output (or error) becomes the tool result of its call, and the last result of the turn
  queues the parent's continuation, so no worker ever waits for children;
- `delegations_close` settles open delegations when the run ends (cancel, budget, failure).
"""

from django.db.models import F, Sum
from django.utils import timezone

from agentops import fastsql
from agentops.agents.tools import ToolFailure, ToolSpec, register, registry
from agentops.outcomes.loop import thread_grade
from agentops.outcomes.models import Evaluation, Verdict
from agentops.runs import services as engine
from agentops.runs.models import (
    RunStatus,
    Step,
    StepKind,
    StepStatus,
    Thread,
    ThreadRole,
    ThreadStatus,
)

from .models import Delegation, DelegationStatus, WorkflowRun

DELEGATE = "delegate"

OUTCOME_STATUS = {
    "succeeded": DelegationStatus.SUCCEEDED,
    "failed": DelegationStatus.FAILED,
    "cancelled": DelegationStatus.CANCELLED,
    "budget_reached": DelegationStatus.BUDGET_REACHED,
}
OUTCOME_WORDS = {
    "failed": "failed",
    "cancelled": "was cancelled",
    "budget_reached": "stopped at its token budget",
}


# A run's WorkflowRun and its version never change (a workflow's run is marked so on its
# row): remember them per process, since the engine asks on every model call and every
# checkpoint of the run's threads.
_WORKFLOW_RUNS = {}
_CACHE_LIMIT = 2048


def _workflow_run(run):
    if not run.in_workflow:
        return None
    if run.pk in _WORKFLOW_RUNS:
        return _WORKFLOW_RUNS[run.pk]
    found = (
        WorkflowRun.objects.select_related("version", "version__workflow").filter(run=run).first()
    )
    if len(_WORKFLOW_RUNS) >= _CACHE_LIMIT:
        _WORKFLOW_RUNS.clear()
    _WORKFLOW_RUNS[run.pk] = found
    return found


def thread_depth(thread):
    """0 for a run's lead, 1 for its sub-agents, 2 for theirs, and so on."""
    if thread.parent_id is None:
        return 0
    depth = Delegation.objects.filter(child_id=thread.pk).values_list("depth", flat=True).first()
    return depth or 1


def roster_of(version):
    return list(
        version.roster.select_related("agent", "pinned_version", "agent__current_version", "rubric")
    )


def delegate_tool_param(version):
    """The `delegate` tool as the lead sees it: the roster and each specialist's role."""
    roster = roster_of(version)
    lines = "\n".join(f"- {entry.key}: {entry.role_description}" for entry in roster)
    return {
        "name": DELEGATE,
        "description": (
            "Hand one sub-task to a specialist of your team and get their final answer back "
            "as this call's result. Several delegate calls in one response run in parallel. "
            "Give each specialist a self-contained task.\n\nSpecialists:\n" + lines
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "specialist": {
                    "type": "string",
                    "enum": [entry.key for entry in roster],
                    "description": "Which specialist does the sub-task.",
                },
                "task": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The sub-task, with everything the specialist needs.",
                },
            },
            "required": ["specialist", "task"],
        },
    }


def delegate_tools(*, thread):
    workflow_run = _workflow_run(thread.run)
    if workflow_run is None:
        return []
    max_depth = workflow_run.version.max_depth
    if thread.parent_id is not None and (max_depth <= 1 or thread_depth(thread) >= max_depth):
        return []
    return [delegate_tool_param(workflow_run.version)]


def _refusal(workflow_run, step, roster_by_key, *, depth, started):
    """Why this delegate call may not start a sub-agent, or ""."""
    if workflow_run is None:
        return "The delegate tool only works for the lead of a workflow run."
    version = workflow_run.version
    if depth > version.max_depth:
        return (
            f"Delegation depth limit reached: this workflow allows {version.max_depth} "
            "level(s) of sub-agents."
        )
    tool_input = step.request.get("input") or {}
    key = tool_input.get("specialist")
    entry = roster_by_key.get(key)
    if entry is None:
        return f"There is no specialist named {key!r}; choose one of: " + ", ".join(
            sorted(roster_by_key)
        )
    if entry.agent.is_archived:
        return f"The specialist {key} is archived and cannot take sub-tasks."
    if entry.rubric is not None and entry.rubric.is_archived:
        return (
            f"The specialist {key}'s rubric {entry.rubric.name} is archived, so its answers "
            "cannot be graded; the workflow needs a new version."
        )
    if not str(tool_input.get("task") or "").strip():
        return "Give the specialist a task."
    if started >= version.max_children:
        return (
            f"Sub-agent limit reached: a run of this workflow may start at most "
            f"{version.max_children} sub-agents, and all of them have been used."
        )
    return ""


def delegations_start(*, run, thread, steps):
    """Start one child thread per delegate call (deferred tool steps of a locked thread)."""
    workflow_run = _workflow_run(run)
    roster_by_key = {}
    started = 0
    if workflow_run is not None:
        roster_by_key = {entry.key: entry for entry in roster_of(workflow_run.version)}
        started = Delegation.objects.filter(run=run).count()
    depth = thread_depth(thread) + 1
    accepted = []
    for step in steps:
        refusal = _refusal(workflow_run, step, roster_by_key, depth=depth, started=started)
        if refusal:
            step.error = refusal
            engine.tool_step_resolve(
                run=run, thread=thread, step=step, content=refusal, is_error=True
            )
            continue
        entry = roster_by_key[step.request["input"]["specialist"]]
        accepted.append((step, entry, str(step.request["input"]["task"]).strip()))
        started += 1
    if not accepted:
        return
    # One insert for every child thread and one for every delegation: a fan-out of fifty
    # starts inside the transaction that recorded the lead's response.
    children = Thread.objects.bulk_create(
        Thread(
            run=run,
            parent=thread,
            agent_version=entry.agent_version(),
            role=ThreadRole.WORKER,
            messages=[{"role": "user", "content": task}],
        )
        for _, entry, task in accepted
    )
    delegations = Delegation.objects.bulk_create(
        Delegation(
            run=run,
            parent=thread,
            step=step,
            child=child,
            roster_entry=entry,
            task=task,
            depth=depth,
        )
        for (step, entry, task), child in zip(accepted, children, strict=True)
    )
    for (_, entry, task), child in zip(accepted, children, strict=True):
        if entry.rubric is not None:
            thread_grade(thread=child, rubric=entry.rubric, task=task)
    thread.pending_children += len(delegations)
    thread.status = ThreadStatus.WAITING_CHILDREN
    start_waiting_children(run=run, version=workflow_run.version, fresh=delegations, changed=thread)


def _working(run, changed):
    """How many of the run's sub-agents hold a parallel slot: running and not waiting for
    sub-agents of their own (those would otherwise hold every slot their sub-agents need,
    and wait forever). `changed`: a thread whose status this transaction changed and has
    not written yet (it began or stopped waiting for its sub-agents)."""
    running = Delegation.objects.filter(run=run, status=DelegationStatus.RUNNING).exclude(
        child__status=ThreadStatus.WAITING_CHILDREN
    )
    if changed is None:
        return running.count()
    working = running.exclude(child=changed).count()
    if changed.parent_id is not None and changed.status == ThreadStatus.ACTIVE:
        working += 1  # a sub-agent whose sub-agents are done takes its slot back
    return working


def start_waiting_children(*, run, version, fresh=None, changed=None):
    """Queue the first model call of waiting children while the parallel limit allows.
    `fresh`: delegations just created in this transaction (their rows need no reading);
    `changed`: see _working."""
    engine.checkpoint_flush()  # a delegation that just finished is no longer running
    if fresh is not None:
        running = _working(run, changed)
        waiting = fresh
    else:
        waiting = list(
            Delegation.objects.filter(run=run, status=DelegationStatus.WAITING)
            .select_related("child")
            .order_by("id")[: version.max_parallel]
        )
        if not waiting:
            return
        running = _working(run, changed)
    chosen = waiting[: max(version.max_parallel - running, 0)]
    if not chosen:
        return
    # The run's row lock, held by every caller, serialises all changes to its threads; each
    # chosen child gets one step, so its next sequence number goes up by one.
    children = [delegation.child for delegation in chosen]
    engine.steps_create(
        {"thread": child, "kind": StepKind.MODEL_CALL, "turn": 1} for child in children
    )
    Thread.objects.filter(pk__in=[child.pk for child in children]).update(
        next_sequence=F("next_sequence") + 1
    )
    Delegation.objects.filter(pk__in=[d.pk for d in chosen]).update(
        status=DelegationStatus.RUNNING, started_at=timezone.now()
    )


def _delegation_of_child_sql():
    from agentops.agents.models import Agent

    from .models import RosterEntry

    parts = [
        fastsql.reader(Delegation, "d"),
        fastsql.reader(RosterEntry, "e"),
        fastsql.reader(Agent, "a"),
        fastsql.reader(Step, "s"),
    ]
    table, column = fastsql.table, fastsql.column
    sql = (
        f"SELECT {', '.join(part.select for part in parts)} FROM {table(Delegation)} d "  # noqa: S608
        f"JOIN {table(RosterEntry)} e ON e.id = d.{column(Delegation, 'roster_entry')} "
        f"JOIN {table(Agent)} a ON a.id = e.{column(RosterEntry, 'agent')} "
        f"JOIN {table(Step)} s ON s.id = d.{column(Delegation, 'step')} "
        f"WHERE d.{column(Delegation, 'child')} = %s"
    )
    return sql, parts


def _delegation_of_child_statement(child):
    sql, _ = fastsql.cached(("delegation of child",), _delegation_of_child_sql)
    return sql, [child.pk]


def _delegation_of_child(row):
    """The child's Delegation (from the row of _delegation_of_child_statement) with its
    roster entry, the entry's agent and the delegate step, as select_related would load
    them: every sub-agent's end reads it while holding its run's row lock, which its
    siblings wait for, in the round trip that locks its parent (CHILD_FINISHED_HOOKS)."""
    _, parts = fastsql.cached(("delegation of child",), _delegation_of_child_sql)
    found = fastsql.instances(row, parts)
    if found is None:
        return None
    delegation, entry, agent, step = found
    entry.agent = agent
    delegation.roster_entry = entry
    delegation.step = step
    return delegation


def delegation_finished(*, run, parent, child, outcome, text, row):
    """A child thread ended: its result answers its delegate call (is_error unless it
    succeeded); a freed slot starts the next waiting child. `row`: the child's delegation,
    read with the parent's lock (the statement it registered with)."""
    # The caller holds the run's row lock, under which every delegation of the run changes.
    delegation = _delegation_of_child(row)
    if delegation is None or not delegation.is_open:
        return
    delegation.status = OUTCOME_STATUS[outcome]
    delegation.finished_at = timezone.now()
    delegation.started_at = delegation.started_at or delegation.finished_at
    if outcome != "succeeded":
        delegation.error = text
    # Written with the delegate step's result below, in one round trip.
    finish = fastsql.update(delegation, fields=["status", "finished_at", "started_at", "error"])
    step = delegation.step
    if outcome == "succeeded":
        content, is_error = text or "(The specialist returned no text.)", False
        if delegation.roster_entry.rubric_id is not None:  # only then was it graded
            content += _grade_note(child)
    else:
        name = delegation.roster_entry.key
        content, is_error = f"The specialist {name} {OUTCOME_WORDS[outcome]}: {text}", True
    if parent.pending_children == 0 and parent.status == ThreadStatus.WAITING_CHILDREN:
        parent.status = ThreadStatus.ACTIVE
    if step.status == StepStatus.RUNNING:
        engine.tool_step_resolve(
            run=run, thread=parent, step=step, content=content, is_error=is_error, also=[finish]
        )
    else:
        fastsql.batch(finish)
    workflow_run = _workflow_run(run)
    if workflow_run is None or not run.is_active:
        return
    version = workflow_run.version
    # A run starts at most max_children sub-agents: when all may run at once, none waits.
    if version.max_parallel < version.max_children:
        start_waiting_children(run=run, version=version, changed=parent)


def _grade_note(child):
    """What the lead should know about a graded answer that did not satisfy its rubric."""
    evaluation = (
        Evaluation.objects.filter(thread_id=child.pk)
        .select_related("rubric_version__rubric")
        .first()
    )
    if evaluation is None or evaluation.verdict in ("", Verdict.SATISFIED):
        return ""
    rubric = evaluation.rubric_version.rubric.name
    if evaluation.verdict == Verdict.GRADER_ERROR:
        return f"\n\n(Note: this answer could not be graded against the rubric {rubric}.)"
    score = evaluation.weighted_score
    shown = f", scoring {score * 100:.0f}%" if score is not None else ""
    return (
        f"\n\n(Note: this answer did not satisfy the rubric {rubric} after "
        f"{evaluation.iterations_count} attempt(s){shown}: "
        f"{evaluation.get_verdict_display().lower()}.)"
    )


def delegations_close(*, run):
    """The run ended: settle delegations and delegate calls still open."""
    if _workflow_run(run) is None:
        return
    now = timezone.now()
    status = {
        RunStatus.CANCELLED: DelegationStatus.CANCELLED,
        RunStatus.BUDGET_REACHED: DelegationStatus.BUDGET_REACHED,
    }.get(run.status, DelegationStatus.FAILED)
    message = f"The run ended ({run.get_status_display()}) before this sub-agent finished."
    Delegation.objects.filter(
        run=run, status__in=[DelegationStatus.WAITING, DelegationStatus.RUNNING]
    ).update(status=status, finished_at=now, error=message)
    Step.objects.filter(
        run=run, tool_name=DELEGATE, status=StepStatus.RUNNING, deadline__isnull=True
    ).update(status=StepStatus.CANCELLED, finished_at=now, error=message)


def child_budget_stop(*, run, thread):
    """A sub-agent past the workflow's per-sub-agent token budget stops."""
    if thread.parent_id is None:
        return ""
    workflow_run = _workflow_run(run)
    if workflow_run is None or not workflow_run.version.child_budget_tokens:
        return ""
    limit = workflow_run.version.child_budget_tokens
    used = thread_tokens(thread)
    if used >= limit:
        return f"Sub-agent token budget reached: {used:,} of {limit:,} tokens used."
    return ""


def thread_tokens(thread):
    totals = Step.objects.filter(thread=thread, kind=StepKind.MODEL_CALL).aggregate(
        i=Sum("input_tokens"), o=Sum("output_tokens")
    )
    return (totals["i"] or 0) + (totals["o"] or 0)


def _delegate_outside_workflow(context, tool_input):
    # The engine hands delegate calls to delegations_start; this runs only if something
    # executes the tool directly, outside a run's lead thread.
    raise ToolFailure("The delegate tool only works for the lead of a workflow run.")


DELEGATE_SPEC = ToolSpec(
    name=DELEGATE,
    description=(
        "Hand a sub-task to a specialist of the workflow's roster (offered automatically to "
        "a workflow's lead; enabling it on an agent is not needed)."
    ),
    input_schema={
        "type": "object",
        "properties": {"specialist": {"type": "string"}, "task": {"type": "string"}},
        "required": ["specialist", "task"],
    },
    run=_delegate_outside_workflow,
)


def install():
    """Register the delegate tool and the engine hooks (once, from AppConfig.ready)."""
    if registry.get(DELEGATE) is None:
        register(DELEGATE_SPEC)
    if delegate_tools not in engine.THREAD_TOOLS_HOOKS:
        engine.THREAD_TOOLS_HOOKS.append(delegate_tools)
        engine.THREAD_LIMIT_HOOKS.append(child_budget_stop)
        engine.on_child_finished(delegation_finished, read=_delegation_of_child_statement)
        engine.RUN_FINISHED_HOOKS.append(delegations_close)
    engine.DEFERRED_TOOLS[DELEGATE] = delegations_start
    from .services import workflow_rerun

    if workflow_rerun not in engine.RERUN_STARTERS:
        engine.RERUN_STARTERS.append(workflow_rerun)
