"""The durable run engine.

A run is a sequence of steps (one model call or one tool call each) whose truth is in
PostgreSQL. A worker claims a step with a conditional update, does the slow work outside any
transaction, then records the result, creates the next steps and queues them in one short
transaction. A step that succeeded is never executed again; a lost worker is covered by the
sweeper, a lost broker message by re-sending queued steps, a redelivery loop by the attempt
counter.
"""

import contextvars
import logging
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import partial

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from agentops import fastsql
from agentops.agents.tools import execute_tool, tool_permission, tools_for_version
from agentops.llm.errors import PermanentModelError, TransientModelError
from agentops.llm.retry import retry_delay
from agentops.llm.services import call_record_save_unless_saved, model_call
from agentops.teams.services import audit_record

from .models import (
    TEAM_BUDGET_REACHED,
    ApprovalDecision,
    Run,
    RunStatus,
    RunTrigger,
    Step,
    StepKind,
    StepStatus,
    TeamBudget,
    Thread,
    ThreadStatus,
)
from .rows import claim_statements, claim_step, claimed_step

logger = logging.getLogger(__name__)

CONTINUE_PROMPT = "Continue exactly where you stopped."
# Failures of our own infrastructure around a model call (the rate limiter's Redis being
# restarted): the same step can succeed later, like a 529.
INFRASTRUCTURE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
OPEN_STEP_STATUSES = (StepStatus.QUEUED, StepStatus.AWAITING_APPROVAL)
MODEL_RESULT_FIELDS = [
    "status",
    "request",
    "response",
    "stop_reason",
    "usage",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "request_id",
    "finished_at",
]

# --- hooks for later capabilities ------------------------------------------------------------
# Called inside the transaction that finishes a run (any final status): fn(run=run). A hook
# may write rows and queue work with transaction.on_commit; it must not call a model.
RUN_FINISHED_HOOKS = []
# Called inside the transaction in which the last sub-agent thread of `parent` finished:
# fn(parent=thread). Delegation continues the parent thread from here.
CHILDREN_FINISHED_HOOKS = []


def on_run_finished(hook):
    RUN_FINISHED_HOOKS.append(hook)
    return hook


def on_children_finished(hook):
    CHILDREN_FINISHED_HOOKS.append(hook)
    return hook


def on_child_finished(hook, *, read=None):
    """Register a CHILD_FINISHED_HOOKS hook (once), with the statement it reads, if any."""
    if hook not in CHILD_FINISHED_HOOKS:
        CHILD_FINISHED_HOOKS.append(hook)
    if read is not None:
        CHILD_FINISHED_READS[hook] = read
    return hook


# --- extension points for delegation (agentops.workflows) --------------------------------------
# fn(thread=thread) -> list of Messages API tool params offered to that thread on top of its
# version's tools (a param with the same name replaces the version's one).
THREAD_TOOLS_HOOKS = []
# Tools the engine does not execute itself: name -> fn(run=, thread=, steps=[Step]). Called in
# the transaction that records the model's tool_use; the steps are RUNNING with no deadline
# (the sweeper leaves them alone) until the handler resolves each with tool_step_resolve.
DEFERRED_TOOLS = {}
# fn(run=, thread=) -> "" or why this thread may not make another model call (e.g. a
# sub-agent's own token budget). Checked with the run's budget before every model call.
THREAD_LIMIT_HOOKS = []
# Called for each sub-agent thread that ends, inside its transaction, with the parent thread
# locked: fn(run=, parent=, child=, outcome=, text=); outcome is "succeeded", "failed",
# "cancelled" or "budget_reached" and text the child's output or its error. A hook
# registered with `read(child) -> (sql, params)` (on_child_finished) gets that statement's
# first row as `row=`: it runs in the round trip that locks the parent, which every
# sibling's end waits for.
CHILD_FINISHED_HOOKS = []
CHILD_FINISHED_READS = {}
FINISHED_THREAD_STATUSES = (ThreadStatus.SUCCEEDED, ThreadStatus.FAILED, ThreadStatus.CANCELLED)
# fn(run=, actor=, latest_version=) -> a new Run started like `run` (with rerun_of=run), or
# None when the hook does not start this kind of run; the first answer wins (a workflow's
# run is rerun as a run of its workflow).
RERUN_STARTERS = []
# fn(original=, rerun=), in the transaction that started a rerun: what else the rerun takes
# over from the original (its grading).
RERUN_HOOKS = []

# --- extension points for threads with a role of their own (agentops.outcomes' grader) ----------
# fn(run=, thread=, output=) -> True when it keeps the thread going after it answered (the hook
# then owns what happens next, e.g. grading the output, and ends it with thread_finish). Called
# for a run's lead and for sub-agents, inside the locked transaction that records the answer.
THREAD_ANSWERED_HOOKS = []


@dataclass(frozen=True)
class ThreadRoleHandler:
    """How the engine runs the model steps of a thread with this role instead of the agent
    version's context: `request(thread=)` -> model_call keyword arguments (model, max_tokens,
    system, messages, tools, tool_choice), called outside any transaction; `result(run=,
    thread=, step=, content=)` after the step is recorded, on locked rows; `error(run=,
    thread=, step=, error=)` after a permanent model error (or transient ones past the attempt
    limit) failed the step, on locked rows. Both may create steps and save the thread."""

    request: object
    result: object
    error: object


THREAD_ROLE_HANDLERS = {}


def thread_finish(*, run, thread, output):
    """Finish a locked thread with its accepted `output`, without asking the
    THREAD_ANSWERED_HOOKS again: a lead ends its run as succeeded, a sub-agent answers its
    parent. The caller saves run and thread."""
    _finish_thread(run, thread, output=output, accepted=True)


def thread_tools(thread):
    """The tools a thread's model calls offer: its version's, plus those the hooks add."""
    tools = {tool["name"]: tool for tool in tools_for_version(thread.agent_version)}
    for hook in THREAD_TOOLS_HOOKS:
        for tool in hook(thread=thread):
            tools[tool["name"]] = tool
    return list(tools.values())


def step_create(*, thread, kind, turn, **fields):
    """Create (and, when QUEUED, queue after commit) the next step of a locked thread; the
    caller saves the thread."""
    return _new_step(thread=thread, kind=kind, turn=turn, **fields)


def tool_step_resolve(*, run, thread, step, content, is_error, also=()):
    """Give a deferred tool step its result, on locked rows; the turn's last result sends
    them all back to the model in the order of the calls. The caller saves run and thread.
    `also`: the caller's own statements, written with the step in one round trip."""
    latency = None
    if step.claimed_at:
        latency = int((timezone.now() - step.claimed_at).total_seconds() * 1000)
    _record_tool_result(
        run, thread, step, content=content, is_error=is_error, latency_ms=latency, also=also
    )


def child_thread_end(*, run, thread, outcome, text=""):
    """End a sub-agent thread (locked, of a locked run) without ending its run: the parent's
    pending-children counter goes down under a row lock and the hooks report the outcome."""
    now = timezone.now()
    thread.status = {
        "succeeded": ThreadStatus.SUCCEEDED,
        "cancelled": ThreadStatus.CANCELLED,
    }.get(outcome, ThreadStatus.FAILED)
    if outcome == "succeeded":
        thread.output = text
    else:  # a thread that answered has nothing left open
        Step.objects.filter(thread=thread, status__in=OPEN_STEP_STATUSES).update(
            status=StepStatus.CANCELLED, finished_at=now, error=f"Not executed: thread {outcome}."
        )
    # Every sibling that ends waits for this run's row lock while it is held: the parent is
    # locked and the hooks' reads done in as few round trips as may be (in the checkpoint's
    # first when it read them ahead), and the parent and the thread are saved with the
    # checkpoint's commit when there is one.
    ahead = _read_ahead.get()
    pending = _checkpoint_writes.get()
    if ahead is not None and ahead[0] == thread.pk and not pending:
        _read_ahead.set(None)
        results = ahead[1]
        _write_with_checkpoint(thread)
    else:
        earlier = _checkpoint_pending_updates()
        results = fastsql.batch(*earlier, fastsql.update(thread), *_parent_statements(thread))
        results = results[len(earlier) + 1 :]
    parent, rows = _parent_and_reads(thread, results)
    parent.pending_children = max(parent.pending_children - 1, 0)
    for hook in CHILD_FINISHED_HOOKS:
        found = {"row": rows[hook]} if hook in rows else {}
        hook(run=run, parent=parent, child=thread, outcome=outcome, text=text, **found)
    if parent.pending_children == 0:
        for hook in CHILDREN_FINISHED_HOOKS:
            hook(parent=parent)
    _write_with_checkpoint(parent)


def _child_finished_readers():
    return [hook for hook in CHILD_FINISHED_HOOKS if hook in CHILD_FINISHED_READS]


def _parent_statements(child):
    """Lock a sub-agent's parent, then the CHILD_FINISHED_READS of its end."""
    lock_parent, _ = fastsql.lock(Thread, child.parent_id)
    return [lock_parent, *(CHILD_FINISHED_READS[hook](child) for hook in _child_finished_readers())]


def _parent_and_reads(child, results):
    """The locked parent and {hook: row read}, from the results of _parent_statements."""
    _, parent_part = fastsql.lock(Thread, child.parent_id)
    parent_row, *read = results
    parent = fastsql.locked(parent_row, Thread, child.parent_id, parent_part)
    readers = _child_finished_readers()
    return parent, {hook: row for hook, (row, _) in zip(readers, read, strict=True)}


def threads_stop(threads, *, status, reason):
    """End `threads` (of a locked run) without asking any hook, and cancel their steps not
    yet executed (one a worker is executing now is recorded but continues nothing)."""
    ids = list(threads.values_list("pk", flat=True))
    Thread.objects.filter(pk__in=ids).update(status=status)
    Step.objects.filter(thread_id__in=ids, status__in=OPEN_STEP_STATUSES).update(
        status=StepStatus.CANCELLED, finished_at=timezone.now(), error=f"Not executed: {reason}."
    )


@dataclass(frozen=True)
class ModelContext:
    """What a capability adds to a thread's model calls: text after the agent's system
    prompt, tools beside the version's own (executed without the version's enable check,
    since the capability offers them), and fields recorded on the step's request."""

    system: str = ""
    tools: tuple = ()
    request: dict = field(default_factory=dict)


# Called before every model call, outside any transaction: fn(thread=thread) -> ModelContext
# or None. It must give the same answer for every call of a thread (store what it chose).
MODEL_CONTEXT_HOOKS = []


def on_model_context(hook):
    MODEL_CONTEXT_HOOKS.append(hook)
    return hook


def model_context(thread):
    """The system prompt and tools of a thread's next model call, with every hook's
    additions: (system, tools, request_fields, hook_tool_names)."""
    version = thread.agent_version
    system = version.system_prompt
    tools = thread_tools(thread)
    names = {tool["name"] for tool in tools}
    extra_request, hook_tools = {}, set()
    for hook in MODEL_CONTEXT_HOOKS:
        context = hook(thread=thread)
        if context is None:
            continue
        if context.system:
            system = f"{system}\n\n{context.system}" if system else context.system
        for tool in context.tools:
            if tool["name"] not in names:
                tools.append(tool)
                names.add(tool["name"])
                hook_tools.add(tool["name"])
        extra_request.update(context.request)
    return system, tools, extra_request, hook_tools


# A thread's model context costs a few queries (its tools, workflow, memory) and is the same
# for every call of the thread (the hooks promise it), so a worker keeps the latest threads'
# contexts for a while instead of rebuilding them for each of a long run's steps.
MODEL_CONTEXT_TTL_S = 60.0
MODEL_CONTEXT_CACHE_SIZE = 2048
_model_contexts = OrderedDict()
_model_contexts_lock = threading.Lock()


def _thread_model_context(thread):
    """model_context(thread), from this process's cache while it is fresh."""
    now = time.monotonic()
    with _model_contexts_lock:
        cached = _model_contexts.get(thread.pk)
    if cached is not None and cached[0] > now:
        system, tools, extra_request, hook_tools = cached[1]
        return system, list(tools), dict(extra_request), set(hook_tools)
    context = model_context(thread)
    with _model_contexts_lock:
        _model_contexts[thread.pk] = (now + MODEL_CONTEXT_TTL_S, context)
        _model_contexts.move_to_end(thread.pk)
        while len(_model_contexts) > MODEL_CONTEXT_CACHE_SIZE:
            _model_contexts.popitem(last=False)
    system, tools, extra_request, hook_tools = context
    return system, list(tools), dict(extra_request), set(hook_tools)


# --- queueing ---------------------------------------------------------------------------------

_inline = contextvars.ContextVar("agentops_runs_inline", default=False)


@contextmanager
def inline_execution():
    """Within this block no step is sent to Celery: run_execute_inline executes them."""
    token = _inline.set(True)
    try:
        yield
    finally:
        _inline.reset(token)


# A step whose claim has not run yet (see _KeptStep.take).
_UNCLAIMED = object()


class _KeptStep:
    """The worker's hold on one step its own checkpoint queues (see step_execute): the id
    of the step it will claim next instead of sending it through the broker. The step is
    chosen when it is queued (`reserve`) and kept once its transaction commits (`keep`); its
    claim may come back with that commit (`claimed`, see _save_and_commit)."""

    def __init__(self, until):
        self.until = until
        self.reserved = None
        self.step_id = None
        self.claimed = None  # (step id, the claimed Step or None) from a commit's round trip

    def reserve(self, step_id):
        if self.reserved is not None or self.step_id is not None:
            return False
        if time.monotonic() >= self.until:
            return False
        self.reserved = step_id
        return True

    def keep(self, step_id):
        self.step_id = step_id

    def take(self):
        """(step id, what its claim found: the Step, None, or _UNCLAIMED when it is still to
        be claimed) and let go of it. A step claimed with a commit whose callbacks did not
        all run comes back too, without being kept: this task then hands it back."""
        step_id, claimed = self.step_id, self.claimed
        self.step_id = self.reserved = self.claimed = None
        if claimed is None:
            return step_id, _UNCLAIMED
        return claimed  # the reserved step, which is the kept one when it was kept


_kept_step = contextvars.ContextVar("agentops_runs_kept_step", default=None)


def _send(step_id, countdown=0.0):
    from .tasks import step_execute as step_execute_task

    try:
        step_execute_task.apply_async((step_id,), countdown=countdown or None)
    except Exception:
        # The step stays queued in the database; the sweeper sends it again.
        logger.exception("Could not queue step %s; the sweeper will re-send it", step_id)


def _enqueue(step_id, countdown=0.0):
    """Send a step to a worker once the current transaction commits (or, in a worker that
    may keep one, keep it for this worker to claim next)."""
    if _inline.get():
        return
    kept = _kept_step.get()
    keep = kept is not None and not countdown and kept.reserve(step_id)

    def send():
        if keep:
            kept.keep(step_id)
        else:
            _send(step_id, countdown)

    transaction.on_commit(send)


def _forget_reservation():
    """A transaction that reserved a kept step rolled back: the step does not exist."""
    kept = _kept_step.get()
    if kept is not None and kept.step_id is None:
        kept.reserved = None


# What a checkpoint's code writes besides its run and thread (an ending sub-agent's parent,
# the delegate call it answers), in its last round trip with the COMMIT rather than in one
# of their own: rows (saved as they are then) and statements.
_checkpoint_writes = contextvars.ContextVar("agentops_runs_checkpoint_writes", default=None)
# An ending sub-agent's parent, locked in the checkpoint's first round trip with its run,
# and the rows its CHILD_FINISHED_READS read: (child's id, results of _parent_statements).
_read_ahead = contextvars.ContextVar("agentops_runs_read_ahead", default=None)


@contextmanager
def _checkpoint():
    """The body of a checkpoint (inside its transaction) that ends in _save_and_commit; what
    is still pending when it ends otherwise is written then."""
    token = _checkpoint_writes.set([])
    ahead = _read_ahead.set(None)
    try:
        yield
        checkpoint_flush()
    finally:
        _read_ahead.reset(ahead)
        _checkpoint_writes.reset(token)


def _write_with_checkpoint(*writes):
    """Rows to save and (sql, params) statements to run now, or in the enclosing
    checkpoint's last round trip."""
    pending = _checkpoint_writes.get()
    if pending is None:
        fastsql.batch(*_statements(writes))
    else:
        pending.extend(writes)


def _statements(writes):
    return [write if isinstance(write, tuple) else fastsql.update(write) for write in writes]


def _checkpoint_pending_updates():
    """The statements waiting for the checkpoint's commit, taken over by the caller.
    Whatever locks and reads what they write, or updates threads in bulk, inside the
    checkpoint runs them first: the stale copy would otherwise overwrite it at the COMMIT,
    or the read would miss the write."""
    pending = _checkpoint_writes.get()
    if not pending:
        return []
    taken = _statements(pending)
    pending.clear()
    return taken


def checkpoint_flush():
    """Run what waits for the enclosing checkpoint's commit now: call it before reading
    rows the checkpoint's code may have written (a delegation, a tool step), inside it."""
    pending = _checkpoint_pending_updates()
    if pending:
        fastsql.batch(*pending)


def _save_and_commit(*rows):
    """A checkpoint's last round trip: save its rows, write what waits for it and commit
    (fastsql.write_and_commit) and, when its transaction reserved a step for this worker,
    claim that step right after the COMMIT in the same round trip: one round trip fewer
    before the worker executes it. The step was committed queued; the claim is the same
    conditional update as any."""
    pending = _checkpoint_writes.get() or []
    # A row both saved here and waiting (an ending sub-agent's thread) is written once.
    statements = [fastsql.update(row) for row in rows if not any(row is w for w in pending)]
    statements += _checkpoint_pending_updates()
    kept = _kept_step.get()
    step_id = kept.reserved if kept is not None else None
    if step_id is None:
        fastsql.write_and_commit(*statements)
        return
    results = fastsql.write_and_commit(
        *statements, then=claim_statements(step_id, **_claim_times())
    )
    if results is not None:  # None: no COMMIT here (not PostgreSQL) or the claim failed
        kept.claimed = (step_id, claimed_step(results))


def steps_create(specs, *, countdown=0.0):
    """step_create for many steps at once (a fan-out's fifty, a response's parallel tool
    calls), in one round trip: `specs` are step_create's keyword arguments."""
    steps = [_unsaved_step(**spec) for spec in specs]
    if not steps:
        return steps
    results = fastsql.batch(*(fastsql.insert(step) for step in steps))
    for step, result in zip(steps, results, strict=True):
        fastsql.inserted(step, result)
        if step.status == StepStatus.QUEUED:
            _enqueue(step.pk, countdown)
    return steps


def _unsaved_step(*, thread, kind, turn, status=StepStatus.QUEUED, **fields):
    step = Step(
        run_id=thread.run_id,
        thread=thread,
        kind=kind,
        sequence=thread.next_sequence,
        turn=turn,
        status=status,
        enqueued_at=timezone.now() if status == StepStatus.QUEUED else None,
        **fields,
    )
    thread.next_sequence += 1
    return step


def _new_step(*, countdown=0.0, **spec):
    (step,) = steps_create([spec], countdown=countdown)
    return step


# --- starting, cancelling, rerunning ----------------------------------------------------------


def run_start(
    *,
    agent,
    input,
    actor=None,
    version=None,
    trigger=RunTrigger.BROWSER,
    budget_tokens=None,
    budget_cost_usd=None,
    max_turns=None,
    max_continuations=0,
    rerun_of=None,
):
    """Create a run of `agent` (its current version unless `version` is given) and queue its
    first model call. Returns the Run."""
    version = version or agent.current_version
    if version is None:
        raise ValidationError("This agent has no saved version to run yet.")
    if version.agent_id != agent.pk:
        raise ValidationError("That version belongs to another agent.")
    if agent.is_archived:
        raise ValidationError("Archived agents cannot be run.")
    if not (input or "").strip():
        raise ValidationError("Give the run some input.")
    with transaction.atomic():
        run = Run.objects.create(
            team_id=agent.team_id,
            agent=agent,
            agent_version=version,
            input=input,
            trigger=trigger,
            rerun_of=rerun_of,
            max_turns=max_turns or 20,
            max_continuations=max_continuations or 0,
            budget_tokens=budget_tokens,
            budget_cost_usd=budget_cost_usd,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        thread = Thread.objects.create(
            run=run, agent_version=version, messages=[{"role": "user", "content": input}]
        )
        _new_step(thread=thread, kind=StepKind.MODEL_CALL, turn=1)
        thread.save(update_fields=["next_sequence"])
        audit_record(
            team=agent.team,
            actor=actor,
            actor_label="" if actor else trigger,
            verb="run.start",
            obj=run,
            after={"agent": agent.slug, "version": version.number, "trigger": trigger},
        )
    return run


def run_cancel(*, run, actor):
    """Stop an active run. A step already talking to the model finishes, but nothing
    follows it."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if not run.is_active:
            raise ValidationError(f"This run has already ended ({run.get_status_display()}).")
        _end_run(
            run,
            RunStatus.CANCELLED,
            error=f"Cancelled by {actor.get_username() if actor else 'the system'}.",
        )
        audit_record(team=run.team, actor=actor, verb="run.cancel", obj=run)
    return run


def run_rerun(*, run, actor, latest_version=False):
    """Start a new run with the same input and budgets, on the same or the latest version:
    a RERUN_STARTERS hook starts the runs it knows (a workflow's), else a plain agent run;
    then the RERUN_HOOKS carry over the rest (grading), all in one transaction."""
    with transaction.atomic():
        starts = (
            starter(run=run, actor=actor, latest_version=latest_version)
            for starter in RERUN_STARTERS
        )
        rerun = next((started for started in starts if started is not None), None)
        if rerun is None:
            version = run.agent.current_version if latest_version else run.agent_version
            rerun = run_start(
                agent=run.agent,
                input=run.input,
                actor=actor,
                version=version,
                trigger=RunTrigger.RERUN,
                budget_tokens=run.budget_tokens,
                budget_cost_usd=run.budget_cost_usd,
                max_turns=run.max_turns,
                max_continuations=run.max_continuations,
                rerun_of=run,
            )
        for hook in RERUN_HOOKS:
            hook(original=run, rerun=rerun)
    return rerun


def step_decide(*, step, actor, approve, message=""):
    """Approve or deny an "always ask" tool call. A denial goes back to the model as an error
    result carrying the optional message; an approval runs the tool, with the message
    appended to its result."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=step.run_id)
        thread = Thread.objects.select_for_update().get(pk=step.thread_id)
        step = Step.objects.select_for_update().get(pk=step.pk)
        if step.status != StepStatus.AWAITING_APPROVAL or not run.is_active:
            raise ValidationError("This tool call is no longer waiting for a decision.")
        step.decision = ApprovalDecision.APPROVED if approve else ApprovalDecision.DENIED
        step.decision_by = actor
        step.decision_message = message.strip()
        step.decided_at = timezone.now()
        if approve:
            step.status = StepStatus.QUEUED
            step.enqueued_at = step.decided_at
            step.save()
            _enqueue(step.pk)
        else:
            step.save()
            text = f"The user denied this call to {step.tool_name}."
            if step.decision_message:
                text += f" Their message: {step.decision_message}"
            _record_tool_result(run, thread, step, content=text, is_error=True, latency_ms=0)
        if run.is_active and not run.steps.filter(status=StepStatus.AWAITING_APPROVAL).exists():
            run.status = RunStatus.RUNNING
        run.save()
        thread.save()
        audit_record(
            team=run.team,
            actor=actor,
            verb="run.tool_approve" if approve else "run.tool_deny",
            obj=step,
            after={"tool": step.tool_name, "message": step.decision_message},
        )
    return step


# --- executing steps --------------------------------------------------------------------------


def step_execute(*, step_id, keep_for_s=0):
    """Claim and execute one step. Safe to call any number of times for the same id: only a
    call that finds the step queued does anything.

    With `keep_for_s`, a step this one's checkpoint queues (the thread's next model call,
    a tool call, a sub-agent's first call, a parent's continuation) is claimed and executed
    here next, for that long: one broker message and one wait for a worker fewer per step.
    It is committed as queued like any other and claimed by the same conditional update,
    on PostgreSQL in the round trip of that commit (see _save_and_commit). A task that
    stops before finishing it hands it back (_hand_back); a worker lost outright leaves it
    to the sweeper, queued or claimed."""
    kept = _KeptStep(until=time.monotonic() + keep_for_s) if keep_for_s > 0 else None
    token = _kept_step.set(kept)
    executing = None
    try:
        step = _claim_and_execute(step_id)
        while kept is not None and kept.step_id is not None:
            executing = kept.take()
            _claim_and_execute(*executing)
            executing = None
    finally:
        _kept_step.reset(token)
        # An error left a kept step unclaimed, or claimed here and unfinished: another
        # worker takes it (see _hand_back).
        for unfinished in (executing, kept and kept.take()):
            if unfinished is not None and unfinished[0] is not None:
                _hand_back(*unfinished)
    return step


def _claim_times():
    now = timezone.now()
    return {"now": now, "deadline": now + timedelta(seconds=settings.AGENTOPS_STEP_DEADLINE_S)}


def _hand_back(step_id, claimed):
    """Send a kept step this task will not finish to the broker. If its claim came back
    with a commit (`claimed`: the Step), it is queued again first, by a conditional update
    on that claim: its attempt stays counted, so a step that keeps breaking its worker
    still ends at AGENTOPS_STEP_MAX_ATTEMPTS; a result recorded meanwhile is never undone.
    Without that, the step would wait for its deadline and the sweeper."""
    if isinstance(claimed, Step):
        try:
            Step.objects.filter(
                pk=claimed.pk, status=StepStatus.RUNNING, attempts=claimed.attempts
            ).update(status=StepStatus.QUEUED, deadline=None, enqueued_at=timezone.now())
        except DatabaseError:
            logger.exception("Could not re-queue step %s; the sweeper will", claimed.pk)
            return
    _send(step_id)


def _claim_and_execute(step_id, claimed=_UNCLAIMED):
    """`claimed`: what the step's claim found when it already ran (see _save_and_commit)."""
    step = claimed
    if step is _UNCLAIMED:
        # With the run, its team and budget, the thread, its version and agent.
        step = claim_step(step_id, **_claim_times())
    if step is None:
        return None
    run = step.run
    if step.attempts > settings.AGENTOPS_STEP_MAX_ATTEMPTS:
        _fail(
            step,
            f"Gave up after {step.attempts - 1} attempts: the step kept being interrupted "
            "(its worker was lost or timed out each time).",
        )
        return step
    if not run.is_active:
        _abandon(step, f"Not executed: the run had already ended ({run.get_status_display()}).")
        return step
    if step.thread.status in FINISHED_THREAD_STATUSES:
        _abandon(step, f"Not executed: its thread had ended ({step.thread.get_status_display()}).")
        return step
    try:
        if step.kind == StepKind.MODEL_CALL:
            _execute_model_step(step)
        else:
            _execute_tool_step(step)
    except Exception as error:
        # A bug must end the run with a message, not loop through redeliveries.
        logger.exception("Step %s failed unexpectedly", step_id)
        _fail(step, f"Internal error while executing this step: {error!r}")
    return step


def _execute_model_step(step):
    run = step.run
    budget_message = budget_stop_reason(run)
    if budget_message:
        _stop_for_budget(step, budget_message)
        return
    thread = step.thread
    version = thread.agent_version
    limit_message = next(
        (m for m in (hook(run=run, thread=thread) for hook in THREAD_LIMIT_HOOKS) if m), ""
    )
    if limit_message:
        _stop_thread_for_limit(step, limit_message)
        return
    handler = THREAD_ROLE_HANDLERS.get(thread.role)
    if handler is not None:
        _execute_role_model_step(step, handler)
        return
    system, tools, extra_request, _ = _thread_model_context(thread)
    messages = thread.messages
    step.request = {
        "model": version.model,
        "max_tokens": version.max_tokens,
        "temperature": version.temperature,
        "thinking_budget": version.thinking_budget,
        "tools": [tool["name"] for tool in tools],
        "messages": len(messages),
        **extra_request,
    }
    try:
        result = model_call(
            team=run.team,
            model=version.model,
            messages=messages,
            system=system,
            tools=tools or None,
            max_tokens=version.max_tokens,
            temperature=version.temperature,
            thinking_budget=version.thinking_budget,
            step_id=step.pk,
            agent_id=version.agent_id,  # a sub-agent's calls count for its own agent
            usage_label=f"run {run.pk}",
            on_wait=partial(_note_rate_limit_wait, step),
            defer_record=True,
        )
    except (TransientModelError, *INFRASTRUCTURE_ERRORS) as error:
        _retry_or_fail(step, error)
        return
    except PermanentModelError as error:
        _fail(step, f"The model call failed: {error}")
        return
    _record_model_result(step, result)


def _note_rate_limit_wait(step, wait_s):
    """A call that waits for the team's rate limit says so on its step, for the run page:
    a running step's not_before is when its call goes out."""
    Step.objects.filter(pk=step.pk, status=StepStatus.RUNNING, attempts=step.attempts).update(
        not_before=timezone.now() + timedelta(seconds=wait_s)
    )


def _execute_role_model_step(step, handler):
    """A model step whose request the thread's role supplies (a grader's fresh context)."""
    run, thread = step.run, step.thread
    request = handler.request(thread=thread)
    step.request = {
        "model": request["model"],
        "max_tokens": request["max_tokens"],
        "tools": [tool["name"] for tool in request.get("tools") or []],
        "tool_choice": request.get("tool_choice"),
        "messages": len(request["messages"]),
        "role": thread.role,
    }
    try:
        result = model_call(
            team=run.team,
            model=request["model"],
            messages=request["messages"],
            system=request.get("system", ""),
            tools=request.get("tools") or None,
            tool_choice=request.get("tool_choice"),
            max_tokens=request["max_tokens"],
            step_id=step.pk,
            agent_id=thread.agent_version.agent_id,  # a specialist's grading is its own
            usage_label=f"run {run.pk} {thread.role}",
            on_wait=partial(_note_rate_limit_wait, step),
            defer_record=True,
        )
    except (TransientModelError, *INFRASTRUCTURE_ERRORS) as error:
        if step.attempts < settings.AGENTOPS_STEP_MAX_ATTEMPTS:
            _retry_or_fail(step, error)
        else:
            _fail(step, f"The model call failed: {error}", error=error)
        return
    except PermanentModelError as error:
        _fail(step, f"The model call failed: {error}", error=error)
        return
    _record_model_result(step, result)


def _execute_tool_step(step):
    thread = step.thread
    started = time.monotonic()
    # A tool a capability offered this thread is not in the version's list: no version
    # governs it.
    offered_by_hook = step.tool_name in _thread_model_context(thread)[3]
    outcome = execute_tool(
        team=step.run.team,
        version=None if offered_by_hook else thread.agent_version,
        name=step.tool_name,
        input=step.request.get("input", {}),
        step_id=step.pk,
    )
    latency_ms = int((time.monotonic() - started) * 1000)
    content = outcome.content
    if step.decision == ApprovalDecision.APPROVED and step.decision_message:
        content = f"{content}\n\nNote from the user who approved this call: {step.decision_message}"
    with transaction.atomic(), _checkpoint():
        run, thread, locked = _lock_for_checkpoint(step)
        if locked is None:
            return
        _record_tool_result(
            run, thread, locked, content=content, is_error=outcome.is_error, latency_ms=latency_ms
        )
        _save_and_commit(run, thread)


def _lock_run_and_thread(step, *then):
    """Lock a step's run, then its thread, then run the statements `then` (in one round
    trip); their results come back with them. The thread's agent version is pinned (never
    edited), so the one the step was executed with is reused rather than read again."""
    lock_run, run_part = fastsql.lock(Run, step.run_id)
    lock_thread, thread_part = fastsql.lock(Thread, step.thread_id)
    run_row, thread_row, *results = fastsql.batch(lock_run, lock_thread, *then)
    run = fastsql.locked(run_row, Run, step.run_id, run_part)
    thread = fastsql.locked(thread_row, Thread, step.thread_id, thread_part)
    thread.run = run
    if "thread" in step._state.fields_cache:
        thread.agent_version = step.thread.agent_version
    return run, thread, results


def _lock_for_checkpoint(step):
    """Lock run, thread and step (always in that order). The step is None when this claim
    no longer owns it: the sweeper handed it to another worker, whose result counts."""
    lock_step, step_part = fastsql.lock(Step, step.pk)
    run, thread, (step_row,) = _lock_run_and_thread(step, lock_step)
    locked = fastsql.locked(step_row, Step, step.pk, step_part)
    if locked.status != StepStatus.RUNNING or locked.attempts != step.attempts:
        logger.warning("Discarding a late result for step %s (attempt %s)", step.pk, step.attempts)
        return run, thread, None
    return run, thread, locked


def _text_of(content):
    return "\n\n".join(
        block.get("text", "") for block in content if block.get("type") == "text"
    ).strip()


def _record_model_result(step, result):
    usage = result.usage or {}
    step.status = StepStatus.SUCCEEDED
    step.response = {"content": result.content, "model": result.model}
    step.stop_reason = result.stop_reason or ""
    step.usage = usage
    step.input_tokens = int(usage.get("input_tokens") or 0)
    step.output_tokens = int(usage.get("output_tokens") or 0)
    step.cost_usd = result.cost_usd or Decimal("0")
    step.latency_ms = result.latency_ms
    step.request_id = result.request_id or ""
    step.finished_at = timezone.now()
    # The call's usage row (model_call(defer_record=True)) is written in the lock's round
    # trip and committed with the answer; on its own if that transaction fails.
    usage_row = result.record
    if usage_row is not None:
        try:
            with transaction.atomic(), _checkpoint():
                _checkpoint_model_result(step, result, usage_row)
            return
        except DatabaseError:
            # Perhaps the usage row itself: a paid answer is not lost for it. Recorded
            # again below, without the row (the step's own conditional write makes a
            # second checkpoint of a committed result a no-op).
            logger.exception("Checkpoint of step %s failed with its usage row", step.pk)
            _forget_reservation()
        except BaseException:
            call_record_save_unless_saved(usage_row)
            raise
        call_record_save_unless_saved(usage_row)
    with transaction.atomic(), _checkpoint():
        _checkpoint_model_result(step, result, None)


def _checkpoint_model_result(step, result, usage_row):
    # Recorded only while this claim still owns the step: the same conditional write that
    # claims it, so a replaced worker's late result changes nothing (its call is recorded).
    record = fastsql.update(
        step,
        fields=MODEL_RESULT_FIELDS,
        only_if={"status": StepStatus.RUNNING, "attempts": step.attempts},
    )
    insert_usage = [fastsql.insert(usage_row)] if usage_row is not None else []
    ending_child = _answer_may_end_sub_agent(step, result)
    ahead = _parent_statements(step.thread) if ending_child else []
    run, thread, ((_, owned), *results) = _lock_run_and_thread(step, record, *insert_usage, *ahead)
    for insert_result in results[: len(insert_usage)]:
        fastsql.inserted(usage_row, insert_result)
    if ending_child:
        _read_ahead.set((step.thread_id, results[len(insert_usage) :]))
    if not owned:
        logger.warning("Discarding a late result for step %s (attempt %s)", step.pk, step.attempts)
        return
    run.input_tokens += step.input_tokens
    run.output_tokens += step.output_tokens
    run.cost_usd += step.cost_usd
    run.model_calls += 1
    run.simulated = run.simulated or bool(result.simulated)
    if run.is_active and thread.status not in FINISHED_THREAD_STATUSES:
        thread.turns += 1
        _continue_after_model(run, thread, step, result.content)
    _save_and_commit(run, thread)


def _answer_may_end_sub_agent(step, result):
    """Whether this answer may end a sub-agent (any stop but a tool call or a paused turn):
    then its checkpoint locks the parent and reads what its end needs in its first round
    trip, under the run's lock anyway, rather than in one more while siblings wait."""
    thread = step._state.fields_cache.get("thread")
    return (
        thread is not None
        and thread.parent_id is not None
        and thread.role not in THREAD_ROLE_HANDLERS
        and result.stop_reason not in ("tool_use", "pause_turn")
    )


def _continue_after_model(run, thread, step, content):
    handler = THREAD_ROLE_HANDLERS.get(thread.role)
    if handler is not None:
        handler.result(run=run, thread=thread, step=step, content=content)
        return
    stop_reason = step.stop_reason
    if stop_reason in ("end_turn", "stop_sequence"):
        thread.messages = [*thread.messages, {"role": "assistant", "content": content}]
        _finish_thread(run, thread, output=_text_of(content))
    elif stop_reason == "tool_use":
        tool_uses = [block for block in content if block.get("type") == "tool_use"]
        if not tool_uses:
            _fail_locked(run, thread, "The model stopped for tool use but asked for no tool.")
        elif thread.turns >= run.max_turns:
            _fail_locked(
                run,
                thread,
                f"Stopped at the turn limit: {run.max_turns} model calls without a final answer.",
            )
        else:
            thread.messages = [*thread.messages, {"role": "assistant", "content": content}]
            _start_tool_steps(run, thread, tool_uses)
    elif stop_reason == "max_tokens":
        if thread.continuations < run.max_continuations and thread.turns < run.max_turns:
            thread.continuations += 1
            # An unfinished tool_use block cannot be answered: keep only the text so far.
            partial = [block for block in content if block.get("type") != "tool_use"]
            if partial:
                thread.messages = [*thread.messages, {"role": "assistant", "content": partial}]
            thread.messages = [*thread.messages, {"role": "user", "content": CONTINUE_PROMPT}]
            _new_step(thread=thread, kind=StepKind.MODEL_CALL, turn=thread.turns + 1)
        else:
            limit = thread.agent_version.max_tokens
            _fail_locked(
                run,
                thread,
                f"The model reached its output limit (max_tokens = {limit}) before finishing. "
                "Raise the agent's max tokens, or allow continuations for this run.",
            )
    elif stop_reason == "pause_turn":
        if thread.turns >= run.max_turns:
            _fail_locked(
                run,
                thread,
                f"Stopped at the turn limit: {run.max_turns} model calls without a final answer.",
            )
        else:
            # The API paused a long turn; sending its content back lets the model resume.
            thread.messages = [*thread.messages, {"role": "assistant", "content": content}]
            _new_step(thread=thread, kind=StepKind.MODEL_CALL, turn=thread.turns + 1)
    elif stop_reason == "refusal":
        text = _text_of(content)
        _fail_locked(
            run,
            thread,
            "The model refused to continue (stop reason: refusal)."
            + (f" It said: {text}" if text else ""),
        )
    else:
        _fail_locked(run, thread, f"The model stopped for an unknown reason: {stop_reason!r}.")


def _start_tool_steps(run, thread, tool_uses):
    """One step per tool call of the response, written together (in one round trip)."""
    version = thread.agent_version
    specs = []
    for block in tool_uses:
        name = block.get("name", "")
        spec = {
            "thread": thread,
            "kind": StepKind.TOOL_CALL,
            "turn": thread.turns,
            "tool_use_id": block.get("id", ""),
            "tool_name": name,
            "request": {"input": block.get("input", {})},
        }
        if name in DEFERRED_TOOLS:
            spec.update(status=StepStatus.RUNNING, claimed_at=timezone.now())
        elif tool_permission(version, name) == "ask":
            spec["status"] = StepStatus.AWAITING_APPROVAL
        specs.append(spec)
    steps = steps_create(specs)
    thread.pending_tools = len(tool_uses)
    if any(step.status == StepStatus.AWAITING_APPROVAL for step in steps):
        run.status = RunStatus.AWAITING_APPROVAL
    deferred = {}
    for step in steps:
        if step.tool_name in DEFERRED_TOOLS:
            deferred.setdefault(step.tool_name, []).append(step)
    for name, deferred_steps in deferred.items():
        DEFERRED_TOOLS[name](run=run, thread=thread, steps=deferred_steps)


def _record_tool_result(run, thread, step, *, content, is_error, latency_ms, also=()):
    """Record one tool call's result on locked rows; the last of a turn's tool calls sends
    all results back to the model."""
    step.status = StepStatus.SUCCEEDED
    step.response = {"content": content, "is_error": bool(is_error)}
    step.latency_ms = latency_ms
    step.finished_at = timezone.now()
    writes = [*also, fastsql.update(step)]
    run.tool_calls += 1
    thread.pending_tools = max(thread.pending_tools - 1, 0)
    if thread.pending_tools or not run.is_active or thread.status in FINISHED_THREAD_STATUSES:
        _write_with_checkpoint(*writes)
        return
    # The turn's results are read back, this one's included.
    fastsql.batch(*_checkpoint_pending_updates(), *writes)
    results = [
        {
            "type": "tool_result",
            "tool_use_id": done.tool_use_id,
            "content": done.response.get("content", ""),
            "is_error": bool(done.response.get("is_error")),
        }
        for done in thread.steps.filter(kind=StepKind.TOOL_CALL, turn=thread.turns).order_by(
            "sequence"
        )
    ]
    thread.messages = [*thread.messages, {"role": "user", "content": results}]
    _new_step(thread=thread, kind=StepKind.MODEL_CALL, turn=thread.turns + 1)


def _finish_thread(run, thread, *, output, accepted=False):
    thread.output = output
    if thread.parent_id is None:
        run.output = output
    # A hook may keep the thread going after its answer (grading it against a rubric).
    if not accepted and any(
        [hook(run=run, thread=thread, output=output) for hook in THREAD_ANSWERED_HOOKS]
    ):
        return  # still active: it may be asked to answer again
    if thread.parent_id is None:
        thread.status = ThreadStatus.SUCCEEDED
        _end_run(run, RunStatus.SUCCEEDED)
        return
    child_thread_end(run=run, thread=thread, outcome="succeeded", text=output)


def _end_run(run, status, *, error=""):
    """Give a locked run its final status and close whatever of it is still open."""
    now = timezone.now()
    run.status = status
    run.error = error or run.error
    run.finished_at = now
    run.started_at = run.started_at or now
    thread_status = {
        RunStatus.SUCCEEDED: ThreadStatus.SUCCEEDED,
        RunStatus.CANCELLED: ThreadStatus.CANCELLED,
    }.get(status, ThreadStatus.FAILED)
    # A pending parent is saved first: ending the run closes it, and the hooks read it.
    fastsql.batch(
        *_checkpoint_pending_updates(),
        fastsql.update(run),
        fastsql.update_where(
            Step,
            {
                "status": StepStatus.CANCELLED,
                "finished_at": now,
                "error": f"Not executed: run {status.label}.",
            },
            run_id=run.pk,
            status=OPEN_STEP_STATUSES,
        ),
        fastsql.update_where(
            Thread,
            {"status": thread_status},
            run_id=run.pk,
            status=[ThreadStatus.ACTIVE, ThreadStatus.WAITING_CHILDREN],
        ),
    )
    for hook in RUN_FINISHED_HOOKS:
        hook(run=run)


def _fail_locked(run, thread, message):
    if thread.parent_id is not None:
        # A sub-agent's failure goes back to its parent as an error result, not the run's end.
        child_thread_end(run=run, thread=thread, outcome="failed", text=message)
        return
    thread.status = ThreadStatus.FAILED
    _end_run(run, RunStatus.FAILED, error=message)


def _fail(step, message, *, error=None):
    """Fail a claimed step and its thread: a thread with a role of its own (a grader) hands
    `error` (or the message) to its handler, a sub-agent answers its parent with the error,
    a lead fails its run."""
    with transaction.atomic():
        run, thread, locked = _lock_for_checkpoint(step)
        if locked is None:
            return
        locked.status = StepStatus.FAILED
        locked.error = message
        locked.finished_at = timezone.now()
        locked.save()
        if run.is_active and thread.status not in FINISHED_THREAD_STATUSES:
            handler = THREAD_ROLE_HANDLERS.get(thread.role)
            if handler is not None:
                handler.error(run=run, thread=thread, step=locked, error=error or message)
            else:
                _fail_locked(run, thread, message)
            run.save()
            thread.save()


def _abandon(step, message):
    Step.objects.filter(pk=step.pk, status=StepStatus.RUNNING).update(
        status=StepStatus.CANCELLED, error=message, finished_at=timezone.now()
    )


def _retry_or_fail(step, error):
    if step.attempts >= settings.AGENTOPS_STEP_MAX_ATTEMPTS:
        _fail(
            step,
            f"The model call failed {step.attempts} times; giving up. Last error: {error}",
        )
        return
    delay = retry_delay(attempt=step.attempts, retry_after=getattr(error, "retry_after", None))
    now = timezone.now()
    with transaction.atomic():
        run, thread, locked = _lock_for_checkpoint(step)
        if locked is None:
            return
        locked.status = StepStatus.QUEUED
        locked.error = f"Attempt {step.attempts} failed, retrying in {delay:.1f} s: {error}"
        locked.enqueued_at = now
        locked.not_before = now + timedelta(seconds=delay)
        locked.deadline = None
        locked.save()
        run.retries += 1
        run.save(update_fields=["retries"])
        _enqueue(locked.pk, countdown=delay)


# --- budgets ----------------------------------------------------------------------------------


def team_month_usage(team, *, now=None):
    """Tokens and cost of all the team's model calls this calendar month (UTC): runs, their
    graders and dreams alike, as the usage page counts them."""
    from agentops.llm.models import ModelCallRecord

    now = now or timezone.now()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    totals = ModelCallRecord.objects.filter(team=team, created_at__gte=month_start).aggregate(
        i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost_usd")
    )
    return {"tokens": (totals["i"] or 0) + (totals["o"] or 0), "cost_usd": totals["c"] or 0}


@transaction.atomic
def team_budget_save(*, team, actor, monthly_tokens=None, monthly_cost_usd=None):
    """Set the team's monthly budget; with neither limit given, the team has none. Runs see
    it from their next model call on."""
    budget, _ = TeamBudget.objects.select_for_update().get_or_create(team=team)

    def limits():
        cost = budget.monthly_cost_usd
        return {
            "monthly_tokens": budget.monthly_tokens,
            "monthly_cost_usd": None if cost is None else f"{cost:.2f}",
        }

    before = limits()
    budget.monthly_tokens = monthly_tokens
    budget.monthly_cost_usd = monthly_cost_usd
    budget.full_clean()
    budget.save()
    audit_record(
        team=team, actor=actor, verb="team_budget.change", obj=budget, before=before, after=limits()
    )
    return budget


def team_budget_state(team):
    """This month's usage against the team's budget, for the budget page."""
    budget = TeamBudget.objects.filter(team=team).first()
    budget = budget if budget is not None and budget.is_set else None
    used = team_month_usage(team)

    def share(limit, spent):
        return None if limit is None else min(float(spent) / float(limit), 1.0)

    return {
        "budget": budget,
        "used": used,
        "token_share": budget and share(budget.monthly_tokens, used["tokens"]),
        "cost_share": budget and share(budget.monthly_cost_usd, used["cost_usd"]),
        "stop_reason": budget and _team_budget_stop_reason(budget, used),
    }


def team_budget_stop_reason(team):
    """Why the team may make no more model calls this month, or "" when it may."""
    try:
        budget = team.budget
    except TeamBudget.DoesNotExist:
        return ""
    if not budget.is_set:
        return ""
    return _team_budget_stop_reason(budget, team_month_usage(team))


def _team_budget_stop_reason(budget, used):
    if budget.monthly_tokens is not None and used["tokens"] >= budget.monthly_tokens:
        return (
            f"{TEAM_BUDGET_REACHED} token budget reached: {used['tokens']:,} of "
            f"{budget.monthly_tokens:,} tokens used this month."
        )
    if budget.monthly_cost_usd is not None and used["cost_usd"] >= budget.monthly_cost_usd:
        return (
            f"{TEAM_BUDGET_REACHED} cost budget reached: ${used['cost_usd']:.4f} of "
            f"${budget.monthly_cost_usd:.2f} spent this month."
        )
    return ""


def budget_stop_reason(run):
    """Why the next model call of `run` may not happen, or "" when it may."""
    if run.budget_tokens is not None and run.total_tokens >= run.budget_tokens:
        return (
            f"Run token budget reached: {run.total_tokens:,} of {run.budget_tokens:,} tokens used."
        )
    if run.budget_cost_usd is not None and run.cost_usd >= run.budget_cost_usd:
        return f"Run cost budget reached: ${run.cost_usd:.4f} of ${run.budget_cost_usd:.4f} spent."
    return team_budget_stop_reason(run.team)


def _stop_thread_for_limit(step, message):
    """A limit of the thread itself (not the run's) stops it: a sub-agent ends over budget."""
    with transaction.atomic():
        run, thread, locked = _lock_for_checkpoint(step)
        if locked is None:
            return
        _cancel_unexecuted(locked, message)
        if not run.is_active or thread.status in FINISHED_THREAD_STATUSES:
            return
        if thread.parent_id is None:
            _end_run(run, RunStatus.BUDGET_REACHED, error=message)
        else:
            child_thread_end(run=run, thread=thread, outcome="budget_reached", text=message)
        run.save()


def _stop_for_budget(step, message):
    with transaction.atomic():
        run, thread, locked = _lock_for_checkpoint(step)
        if locked is None:
            return
        _cancel_unexecuted(locked, message)
        if run.is_active:
            _end_run(run, RunStatus.BUDGET_REACHED, error=message)


def _cancel_unexecuted(step, message):
    step.status = StepStatus.CANCELLED
    step.error = f"Not executed: {message}"
    step.finished_at = timezone.now()
    step.save()


# --- recovery ---------------------------------------------------------------------------------


def steps_sweep(*, now=None, requeue_after_s=None):
    """Re-queue steps whose worker vanished (running past their deadline) and re-send queued
    steps whose broker message may be lost. Returns (requeued, resent, failed) counts."""
    now = now or timezone.now()
    requeue_after = timedelta(
        seconds=settings.AGENTOPS_STEP_REQUEUE_AFTER_S
        if requeue_after_s is None
        else requeue_after_s
    )
    requeued = failed = 0
    stuck_ids = list(
        Step.objects.filter(status=StepStatus.RUNNING, deadline__lt=now).values_list(
            "pk", flat=True
        )[:500]
    )
    for step_id in stuck_ids:
        with transaction.atomic():
            step = (
                Step.objects.select_for_update(skip_locked=True)
                .filter(pk=step_id, status=StepStatus.RUNNING, deadline__lt=now)
                .first()
            )
            if step is None:
                continue
            if step.attempts >= settings.AGENTOPS_STEP_MAX_ATTEMPTS:
                step.status = StepStatus.FAILED
                step.error = (
                    f"Gave up after {step.attempts} attempts: the worker running this step "
                    "was lost or timed out each time."
                )
                step.finished_at = now
                step.save()
                run = Run.objects.select_for_update().get(pk=step.run_id)
                if run.is_active:
                    _end_run(run, RunStatus.FAILED, error=step.error)
                failed += 1
            else:
                step.status = StepStatus.QUEUED
                step.error = (
                    f"Re-queued by the sweeper: attempt {step.attempts} passed its deadline "
                    "(its worker was lost or too slow)."
                )
                step.deadline = None
                step.enqueued_at = now
                step.save()
                Run.objects.filter(pk=step.run_id).update(retries=F("retries") + 1)
                _enqueue(step.pk)
                requeued += 1
    stale_ids = list(
        Step.objects.filter(status=StepStatus.QUEUED, enqueued_at__lt=now - requeue_after)
        .filter(Q(not_before__isnull=True) | Q(not_before__lt=now - requeue_after))
        .values_list("pk", flat=True)[:500]
    )
    for step_id in stale_ids:
        with transaction.atomic():
            if Step.objects.filter(pk=step_id, status=StepStatus.QUEUED).update(enqueued_at=now):
                _enqueue(step_id)
    if requeued or failed or stale_ids:
        logger.info(
            "Sweeper: %s re-queued, %s re-sent, %s failed", requeued, len(stale_ids), failed
        )
    return requeued, len(stale_ids), failed


# --- executing without a worker ---------------------------------------------------------------


def run_execute_inline(*, run, max_steps=500):
    """Execute a run's queued steps in this process, one at a time, until none is queued (or
    it waits for an approval). For tests, the demo and `run_agent` without a worker. Retry
    delays are not waited for."""
    with inline_execution():
        for _ in range(max_steps):
            step_id = (
                Step.objects.filter(run_id=run.pk, status=StepStatus.QUEUED)
                .order_by("id")
                .values_list("pk", flat=True)
                .first()
            )
            if step_id is None:
                break
            step_execute(step_id=step_id)
    run.refresh_from_db()
    return run
