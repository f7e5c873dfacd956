import pytest
from django.db import connection
from django.db.models import Count

from agentops import fastsql
from agentops.llm.models import ModelCallRecord
from agentops.runs.models import RunStatus, RunTrigger, Step, StepStatus, ThreadStatus
from agentops.workflows.models import Delegation, DelegationStatus, WorkflowMode
from agentops.workflows.services import thread_cancel, workflow_run_start


def _lead_thread(run):
    return run.threads.get(parent__isnull=True)


def test_lead_gets_every_child_result_as_the_matching_tool_result(make_workflow, sim, drain):
    workflow = make_workflow()
    run = workflow_run_start(workflow=workflow, input="Write a report on tidal energy.")
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    lead = _lead_thread(run)
    children = list(run.threads.filter(parent=lead).order_by("id"))
    assert len(children) == 3
    assert all(child.status == ThreadStatus.SUCCEEDED for child in children)
    calls = [b for b in lead.messages[1]["content"] if b["type"] == "tool_use"]
    results = lead.messages[2]["content"]
    assert [r["tool_use_id"] for r in results] == [c["id"] for c in calls]
    by_call = {d.step.tool_use_id: d for d in Delegation.objects.filter(run=run)}
    for call, result in zip(calls, results, strict=True):
        delegation = by_call[call["id"]]
        assert delegation.roster_entry.key == call["input"]["specialist"]
        assert result["content"] == delegation.child.output
        assert result["is_error"] is False
    assert "researcher" in run.output and "critic" in run.output
    assert lead.pending_children == 0


def test_fan_out_gives_every_specialist_the_input(make_workflow, sim, drain):
    workflow = make_workflow(mode=WorkflowMode.FAN_OUT)
    run = drain(workflow_run_start(workflow=workflow, input="Assess solar panels."))
    assert run.status == RunStatus.SUCCEEDED, run.error
    tasks = list(Delegation.objects.filter(run=run).values_list("task", flat=True))
    assert tasks == ["Assess solar panels."] * 3
    lead = _lead_thread(run)
    # One model call: the synthesis; the fan-out itself was not a model decision.
    assert lead.steps.filter(kind="model_call").count() == 1
    # Usage counts each specialist's calls for that specialist, not for the lead.

    by_agent = {
        name: count
        for name, count in ModelCallRecord.objects.filter(label=f"run {run.pk}")
        .values_list("agent__name")
        .annotate(count=Count("id"))
    }
    specialists = {d.roster_entry.agent.name for d in Delegation.objects.filter(run=run)}
    assert by_agent == {run.agent.name: 1, **{name: 1 for name in specialists}}


def test_starting_a_fan_out_takes_as_many_round_trips_for_six_specialists_as_for_two(
    make_workflow, make_agent, specialists, monkeypatch
):
    """A fan-out's steps are written together, so a fan-out of fifty starts in one short
    transaction: the web request's (or a lead's checkpoint, under the run's row lock)."""
    more = [make_agent(f"Analyst {n}") for n in range(3)]
    batches = []
    batch = fastsql.batch

    def counted_batch(*statements):
        batches.append(len(statements))
        return batch(*statements)

    monkeypatch.setattr(fastsql, "batch", counted_batch)

    def round_trips(roster, name):
        workflow = make_workflow(
            roster=roster, name=name, mode=WorkflowMode.FAN_OUT, max_parallel=len(roster)
        )
        batches.clear()
        orm = []
        with connection.execute_wrapper(lambda execute, *args: orm.append(1) or execute(*args)):
            run = workflow_run_start(workflow=workflow, input="Assess solar panels.")
        steps = run.steps.order_by("thread_id", "sequence")
        assert steps.filter(status=StepStatus.QUEUED).count() == len(roster)
        for child in run.threads.filter(parent__isnull=False):
            assert child.next_sequence == 2
            assert [s.sequence for s in child.steps.all()] == [1]
        return len(batches) + len(orm)

    assert round_trips(specialists[:2], "Pair") == round_trips([*specialists, *more], "Six")


def test_a_failing_child_returns_an_error_result_and_the_lead_decides(
    make_workflow, make_agent, specialists, sim, drain
):
    # A 5-token limit makes the specialist stop mid-answer: its thread fails.
    broken = make_agent("Broken", max_tokens=5)
    workflow = make_workflow(roster=[specialists[0], broken])
    run = drain(workflow_run_start(workflow=workflow, input="Compare two databases."))
    assert run.status == RunStatus.SUCCEEDED, run.error
    failed = Delegation.objects.get(run=run, roster_entry__agent=broken)
    assert failed.status == DelegationStatus.FAILED
    assert failed.child.status == ThreadStatus.FAILED
    results = _lead_thread(run).messages[2]["content"]
    assert [r["is_error"] for r in results] == [False, True]
    assert "output limit" in results[1]["content"]
    assert "1 of 2 specialist(s) failed" in run.output


def test_sub_agent_limit_refuses_extra_calls(make_workflow, sim, drain):
    workflow = make_workflow(max_children=2)
    run = drain(workflow_run_start(workflow=workflow, input="Plan a garden."))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert Delegation.objects.filter(run=run).count() == 2
    results = _lead_thread(run).messages[2]["content"]
    assert [r["is_error"] for r in results] == [False, False, True]
    assert "Sub-agent limit reached" in results[2]["content"]


def test_parallel_limit_queues_children_behind_free_slots(make_workflow, sim):
    from agentops.runs import services as engine

    workflow = make_workflow(max_parallel=1)
    run = workflow_run_start(workflow=workflow, input="Review a contract.")
    with engine.inline_execution():
        lead_step = Step.objects.get(run=run, status=StepStatus.QUEUED)
        engine.step_execute(step_id=lead_step.pk)
    statuses = list(Delegation.objects.filter(run=run).values_list("status", flat=True))
    assert statuses == [
        DelegationStatus.RUNNING,
        DelegationStatus.WAITING,
        DelegationStatus.WAITING,
    ]
    assert Step.objects.filter(run=run, status=StepStatus.QUEUED).count() == 1
    run = engine.run_execute_inline(run=run)
    assert run.status == RunStatus.SUCCEEDED
    spans = sorted((d.started_at, d.finished_at) for d in Delegation.objects.filter(run=run))
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False))


def test_child_token_budget_stops_the_child_with_an_error_result(
    make_workflow, make_agent, specialists, sim, drain
):
    # The fetcher calls http_fetch (refused: the host is not allowlisted), so it needs a
    # second model call, which its 1-token budget forbids.
    fetcher = make_agent("Fetcher", tools=[{"name": "http_fetch", "permission": "allow"}])
    workflow = make_workflow(roster=[specialists[0], fetcher], child_budget_tokens=1)
    run = drain(workflow_run_start(workflow=workflow, input="Read https://example.com/a"))
    assert run.status == RunStatus.SUCCEEDED, run.error
    stopped = Delegation.objects.get(run=run, roster_entry__agent=fetcher)
    assert stopped.status == DelegationStatus.BUDGET_REACHED
    assert stopped.child.steps.filter(kind="model_call").count() == 2
    results = _lead_thread(run).messages[2]["content"]
    assert [r["is_error"] for r in results] == [False, True]
    assert "stopped at its token budget" in results[1]["content"]


def test_run_budget_ends_the_whole_tree(make_workflow, sim, drain):
    workflow = make_workflow(budget_tokens=1)
    run = drain(workflow_run_start(workflow=workflow, input="Summarize the news."))
    assert run.status == RunStatus.BUDGET_REACHED
    assert "token budget" in run.error
    assert not Delegation.objects.filter(
        run=run, status__in=[DelegationStatus.WAITING, DelegationStatus.RUNNING]
    ).exists()


def test_cancelling_the_run_cancels_its_whole_tree(make_workflow, sim, alice):
    from agentops.runs import services as engine

    workflow = make_workflow()
    run = workflow_run_start(workflow=workflow, input="Design a logo.", actor=alice)
    with engine.inline_execution():
        engine.step_execute(step_id=Step.objects.get(run=run, status=StepStatus.QUEUED).pk)
    assert Delegation.objects.filter(run=run, status=DelegationStatus.RUNNING).count() == 3
    thread_cancel(thread=_lead_thread(run), actor=alice)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert set(run.threads.values_list("status", flat=True)) == {ThreadStatus.CANCELLED}
    assert set(Delegation.objects.filter(run=run).values_list("status", flat=True)) == {
        DelegationStatus.CANCELLED
    }
    assert not run.steps.filter(status__in=[StepStatus.QUEUED, StepStatus.RUNNING]).exists()
    # A worker that picks up one of the children's queued messages now does nothing.
    run = engine.run_execute_inline(run=run)
    assert run.model_calls == 1


def test_cancelling_one_child_returns_an_error_result(make_workflow, sim, alice):
    from agentops.runs import services as engine

    workflow = make_workflow()
    run = workflow_run_start(workflow=workflow, input="Plan a trip.", actor=alice)
    with engine.inline_execution():
        engine.step_execute(step_id=Step.objects.get(run=run, status=StepStatus.QUEUED).pk)
    writer = Delegation.objects.get(run=run, roster_entry__agent__name="Writer")
    thread_cancel(thread=writer.child, actor=alice)
    run = engine.run_execute_inline(run=run)
    assert run.status == RunStatus.SUCCEEDED
    writer.refresh_from_db()
    assert writer.status == DelegationStatus.CANCELLED
    results = _lead_thread(run).messages[2]["content"]
    assert [r["is_error"] for r in results] == [False, True, False]
    assert "was cancelled" in results[1]["content"]


def test_depth_limit_keeps_the_delegate_tool_from_sub_agents(make_workflow, sim, drain):
    workflow = make_workflow(max_depth=2, max_children=20)
    run = drain(workflow_run_start(workflow=workflow, input="Audit a website."))
    assert run.status == RunStatus.SUCCEEDED, run.error
    depths = sorted(set(Delegation.objects.filter(run=run).values_list("depth", flat=True)))
    assert depths == [1, 2]
    deepest = Delegation.objects.filter(run=run, depth=2).first().child
    assert not deepest.children.exists()


def test_schedule_trigger_is_recorded(make_workflow, sim):
    run = workflow_run_start(
        workflow=make_workflow(), input="Daily digest.", trigger=RunTrigger.SCHEDULE
    )
    assert run.trigger == RunTrigger.SCHEDULE
    assert run.workflow_run.version == run.workflow_run.workflow.current_version


def test_the_fan_out_benchmark_reads_where_a_run_spent_its_time(make_workflow, sim, drain):
    from agentops.workflows.bench import _timeline

    workflow = make_workflow(mode=WorkflowMode.FAN_OUT)
    run = drain(workflow_run_start(workflow=workflow, input="Assess solar panels."))
    assert run.status == RunStatus.SUCCEEDED, run.error
    timeline = _timeline(run)
    assert (
        0
        <= timeline["children_queued_s"]
        <= timeline["children_answered_s"]
        <= timeline["lead_resumed_s"]
    )
    assert timeline["children_calls_started_s"] <= timeline["children_answered_s"]
    assert timeline["checkpoints_s"] == pytest.approx(
        timeline["lead_resumed_s"] - timeline["children_answered_s"], abs=0.002
    )


def test_a_sub_agent_ends_in_two_round_trips_under_its_run_lock(
    make_workflow, sim, drain, monkeypatch, round_trips
):
    """Its siblings wait for the run's row lock while a sub-agent's last checkpoint holds
    it: lock the run and the parent, record the answer and read the delegation; save the
    run, thread and parent, answer the delegate call and commit. The last one also writes
    the delegate call's answer before it reads the turn's results, and queues the lead's
    next call."""
    from agentops.runs import services as engine

    checkpoint = engine._checkpoint_model_result
    per_child = []

    def counted_checkpoint(step, result, usage_row):
        before = len(round_trips)
        with round_trips.counting():
            checkpoint(step, result, usage_row)
        if step.thread.parent_id is not None:
            per_child.append(len(round_trips) - before)

    monkeypatch.setattr(engine, "_checkpoint_model_result", counted_checkpoint)
    # All may run at once (as in the benchmark): no waiting child to look for.
    workflow = make_workflow(mode=WorkflowMode.FAN_OUT, max_parallel=3, max_children=3)
    run = drain(workflow_run_start(workflow=workflow, input="Assess solar panels."))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert per_child == [2, 2, 5]


def test_two_sub_agents_ended_in_one_checkpoint_both_reach_their_parent(
    make_workflow, specialists, sim
):
    """The parent waits for the checkpoint's commit to be saved; a second end in the same
    checkpoint must not lock and read it from before the first."""
    from django.db import transaction

    from agentops.runs import services as engine
    from agentops.runs.models import Run, StepKind

    workflow = make_workflow(
        roster=specialists[:2], mode=WorkflowMode.FAN_OUT, max_parallel=2, max_children=2
    )
    run = workflow_run_start(workflow=workflow, input="Assess solar panels.")
    children = list(run.threads.filter(parent__isnull=False).order_by("id"))
    with transaction.atomic(), engine._checkpoint():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        for child in children:
            engine.child_thread_end(
                run=locked, thread=child, outcome="succeeded", text=f"Answer of {child.pk}."
            )
    lead = _lead_thread(run)
    assert lead.pending_children == 0 and lead.status == ThreadStatus.ACTIVE
    results = lead.messages[2]["content"]
    assert [r["content"] for r in results] == [f"Answer of {c.pk}." for c in children]
    assert lead.steps.filter(kind=StepKind.MODEL_CALL, status=StepStatus.QUEUED).count() == 1


def test_a_sub_agent_waiting_for_its_own_sub_agents_frees_its_parallel_slot(
    make_workflow, sim, drain
):
    """Two slots, three specialists, each delegating again: were a waiting sub-agent to
    keep its slot, the two first would wait for sub-agents that wait for a slot forever."""
    from agentops.runs import services as engine

    workflow = make_workflow(max_depth=2, max_children=20, max_parallel=2)
    run = workflow_run_start(workflow=workflow, input="Audit a website.")

    def working():
        return Delegation.objects.filter(run=run, status=DelegationStatus.RUNNING).exclude(
            child__status=ThreadStatus.WAITING_CHILDREN
        )

    with engine.inline_execution():
        engine.step_execute(step_id=Step.objects.get(run=run, status=StepStatus.QUEUED).pk)
        first, second, third = Delegation.objects.filter(run=run).order_by("id")
        assert working().count() == 2 and third.status == DelegationStatus.WAITING
        step = first.child.steps.get(status=StepStatus.QUEUED)
        engine.step_execute(step_id=step.pk)
    # The first now waits for its own: its slot went to one of them, not to the third.
    first.child.refresh_from_db()
    assert first.child.status == ThreadStatus.WAITING_CHILDREN
    assert set(working().values_list("depth", flat=True)) == {1, 2}
    assert working().count() == 2
    third.refresh_from_db()
    assert third.status == DelegationStatus.WAITING
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    delegations = Delegation.objects.filter(run=run)
    assert {d.status for d in delegations} == {DelegationStatus.SUCCEEDED}
    assert sorted(set(delegations.values_list("depth", flat=True))) == [1, 2]
