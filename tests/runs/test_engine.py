"""The agent loop against the in-process simulator, executed synchronously."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from agentops.runs import services
from agentops.runs.models import (
    ApprovalDecision,
    Run,
    RunStatus,
    Step,
    StepKind,
    StepStatus,
    TeamBudget,
)
from agentops.teams.models import AuditEvent

pytestmark = pytest.mark.django_db

ALLOW = "allow"
ASK = "ask"


def _tools(*names, permission=ALLOW):
    return [{"name": name, "permission": permission} for name in names]


def _model_steps(run):
    return list(run.steps.filter(kind=StepKind.MODEL_CALL).order_by("sequence"))


def _tool_steps(run):
    return list(run.steps.filter(kind=StepKind.TOOL_CALL).order_by("sequence"))


def test_plain_answer_succeeds_with_totals(make_agent, drain, sim, alice):
    agent = make_agent()
    run = services.run_start(agent=agent, input="Say hello to the team.", actor=alice)
    assert run.status == RunStatus.QUEUED
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output
    assert run.simulated
    [step] = _model_steps(run)
    assert step.stop_reason == "end_turn"
    assert step.attempts == 1
    assert step.input_tokens > 0 and step.output_tokens > 0
    assert run.input_tokens == step.input_tokens
    assert run.cost_usd == step.cost_usd
    assert run.started_at and run.finished_at
    # The step id reaches the model layer as X-Agentops-Step.
    assert sim.step_counts() == {str(step.pk): 1}
    assert AuditEvent.objects.filter(verb="run.start", object_id=str(run.pk)).exists()


def test_agent_loop_with_a_tool(make_agent, drain, sim, alice, tool_calls):
    agent = make_agent(tools=_tools("get_weather"))
    run = services.run_start(
        agent=agent, input="Use get_weather to tell me the weather in Paris.", actor=alice
    )
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    first, second = _model_steps(run)
    assert first.stop_reason == "tool_use"
    [tool_step] = _tool_steps(run)
    assert tool_step.tool_name == "get_weather"
    assert tool_step.status == StepStatus.SUCCEEDED
    assert "Sunny" in tool_step.response["content"]
    assert not tool_step.response["is_error"]
    assert len(tool_calls) == 1
    # The second model call received the tool result for the first call's tool_use id.
    last_request = sim.bodies()[-1]
    result_block = last_request["messages"][-1]["content"][0]
    assert result_block["type"] == "tool_result"
    assert result_block["tool_use_id"] == tool_step.tool_use_id
    assert second.stop_reason == "end_turn"
    assert run.model_calls == 2 and run.tool_calls == 1
    assert [r.body["tools"][0]["name"] for r in sim.received] == ["get_weather", "get_weather"]


def test_parallel_tool_calls_go_back_together(make_agent, drain, sim, alice, tool_calls):
    agent = make_agent(tools=_tools("get_weather", "get_stock"))
    run = services.run_start(
        agent=agent,
        input="Call get_weather for Oslo and get_stock for the SKU AB-1 at the same time.",
        actor=alice,
    )
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    tool_steps = _tool_steps(run)
    assert {s.tool_name for s in tool_steps} == {"get_weather", "get_stock"}
    assert len({s.turn for s in tool_steps}) == 1  # both from one model response
    # Both results travel back in one user message, in the order the model asked.
    results = sim.bodies()[-1]["messages"][-1]["content"]
    assert [b["tool_use_id"] for b in results] == [s.tool_use_id for s in tool_steps]
    assert len(_model_steps(run)) == 2


def test_tool_results_wait_for_the_last_parallel_tool(make_agent, sim, alice):
    agent = make_agent(tools=_tools("get_weather", "get_stock"))
    run = services.run_start(
        agent=agent, input="Use get_weather for Rome and get_stock for SKU X-9.", actor=alice
    )
    with services.inline_execution():
        services.step_execute(step_id=_model_steps(run)[0].pk)
        first_tool, second_tool = _tool_steps(run)
        services.step_execute(step_id=first_tool.pk)
        # One tool finished: no model step yet, its result written with the commit.
        assert len(_model_steps(run)) == 1
        assert run.threads.get().pending_tools == 1
        first_tool.refresh_from_db()
        assert first_tool.status == StepStatus.SUCCEEDED and first_tool.response["content"]
        services.step_execute(step_id=second_tool.pk)
    assert len(_model_steps(run)) == 2
    assert run.threads.get().pending_tools == 0
    results = run.threads.get().messages[-1]["content"]
    assert [r["content"] for r in results] == [s.response["content"] for s in _tool_steps(run)]


def test_a_tool_result_not_the_last_is_written_with_its_commit(
    make_agent, sim, alice, monkeypatch, round_trips
):
    """Between locking its run and committing, a parallel tool call's checkpoint makes one
    round trip: the result goes with the COMMIT. The last one also reads the turn's
    results and queues the next model call."""
    agent = make_agent(tools=_tools("get_weather", "get_stock"))
    run = services.run_start(
        agent=agent, input="Use get_weather for Rome and get_stock for SKU X-9.", actor=alice
    )
    lock, commit = services._lock_for_checkpoint, services._save_and_commit
    committed = []

    def counted_lock(step):
        round_trips.clear()
        return lock(step)

    def counted_commit(*rows):
        commit(*rows)
        committed.append(list(round_trips))

    with services.inline_execution():
        services.step_execute(step_id=_model_steps(run)[0].pk)
        first_tool, second_tool = _tool_steps(run)
        monkeypatch.setattr(services, "_lock_for_checkpoint", counted_lock)
        monkeypatch.setattr(services, "_save_and_commit", counted_commit)
        with round_trips.counting():
            services.step_execute(step_id=first_tool.pk)
            services.step_execute(step_id=second_tool.pk)
    first, second = committed
    assert first == ["batch", "batch"]
    # write the result, read the turn's results, queue the model call, commit
    assert second == ["batch", "batch", "orm", "batch", "batch"]


def test_invalid_tool_input_becomes_an_error_result(
    make_agent, drain, sim, alice, tool_calls, login
):
    agent = make_agent(tools=_tools("get_weather"))
    run = services.run_start(agent=agent, input="Use get_weather for Lima.", actor=alice)
    with services.inline_execution():
        services.step_execute(step_id=_model_steps(run)[0].pk)
    # The model sends input that breaks the tool's schema.
    [tool_step] = _tool_steps(run)
    tool_step.request = {"input": {"city": 7}}
    tool_step.save()
    run = drain(run)
    tool_step.refresh_from_db()
    assert tool_step.response["is_error"]
    assert "Invalid input for get_weather" in tool_step.response["content"]
    assert tool_calls == []  # the tool itself never ran
    assert run.status == RunStatus.SUCCEEDED
    sent = sim.bodies()[-1]["messages"][-1]["content"][0]
    assert sent["is_error"] is True
    page = login(alice).get(reverse("runs:detail", args=[run.pk])).text
    assert '<span class="badge bad">Error result</span>' in page


@pytest.mark.parametrize(
    ("marker", "status", "message"),
    [
        ("[sim:refusal]", RunStatus.FAILED, "refused"),
        ("[sim:max_tokens]", RunStatus.FAILED, "output limit (max_tokens = 1024)"),
        ("[sim:stop_sequence]", RunStatus.SUCCEEDED, ""),
    ],
)
def test_stop_reasons_that_end_the_run(make_agent, drain, sim, alice, marker, status, message):
    agent = make_agent()
    run = services.run_start(agent=agent, input=f"Write a poem. {marker}", actor=alice)
    run = drain(run)
    assert run.status == status
    assert message in run.error
    assert run.finished_at is not None


def test_max_tokens_with_a_continuation(make_agent, drain, sim, alice):
    agent = make_agent()
    run = services.run_start(
        agent=agent, input="Write a long essay. [sim:max_tokens]", actor=alice, max_continuations=1
    )
    run = drain(run)
    first, second = _model_steps(run)
    assert first.stop_reason == "max_tokens"
    assert sim.bodies()[-1]["messages"][-1] == {
        "role": "user",
        "content": services.CONTINUE_PROMPT,
    }
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert second.stop_reason == "end_turn"


def test_pause_turn_resumes_with_the_paused_content(make_agent, drain, sim, alice):
    agent = make_agent()
    run = services.run_start(agent=agent, input="Research this. [sim:pause_turn]", actor=alice)
    run = drain(run)
    steps = _model_steps(run)
    assert steps[0].stop_reason == "pause_turn"
    # The paused assistant content is sent back as the last message.
    second_request = sim.bodies()[1]
    assert second_request["messages"][-1]["role"] == "assistant"
    assert second_request["messages"][-1]["content"] == steps[0].response["content"]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert [s.stop_reason for s in steps] == ["pause_turn", "end_turn"]


def test_turn_limit_stops_a_tool_loop(make_agent, drain, sim, alice):
    agent = make_agent(tools=_tools("get_weather"))
    run = services.run_start(
        agent=agent, input="Use get_weather for Bern.", actor=alice, max_turns=1
    )
    run = drain(run)
    assert run.status == RunStatus.FAILED
    assert "turn limit" in run.error
    assert _tool_steps(run) == []


def test_failing_webhook_tool(make_agent, drain, sim, alice, team_a, failing_webhook):
    agent = make_agent(tools=_tools(failing_webhook.name))
    run = services.run_start(
        agent=agent, input=f"Use {failing_webhook.name} to look up order 12.", actor=alice
    )
    run = drain(run)
    [tool_step] = _tool_steps(run)
    assert tool_step.response["is_error"]
    assert "HTTP 500" in tool_step.response["content"]
    # The step id reaches the webhook too, so a receiver can de-duplicate.
    assert failing_webhook.received_steps == [str(tool_step.pk)]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert len(_model_steps(run)) == 2


def test_always_ask_tool_waits_then_runs_when_approved(make_agent, drain, sim, alice, tool_calls):
    agent = make_agent(tools=_tools("get_weather", permission=ASK))
    run = services.run_start(agent=agent, input="Use get_weather for Kyiv.", actor=alice)
    run = drain(run)
    assert run.status == RunStatus.AWAITING_APPROVAL
    [tool_step] = _tool_steps(run)
    assert tool_step.status == StepStatus.AWAITING_APPROVAL
    assert tool_calls == []
    services.step_decide(step=tool_step, actor=alice, approve=True, message="Use Celsius.")
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    tool_step.refresh_from_db()
    assert tool_step.decision == ApprovalDecision.APPROVED
    assert tool_step.decision_by == alice
    assert "Use Celsius." in tool_step.response["content"]
    assert len(tool_calls) == 1
    assert AuditEvent.objects.filter(verb="run.tool_approve").exists()


def test_always_ask_tool_denied_tells_the_model(make_agent, drain, sim, alice, tool_calls):
    agent = make_agent(tools=_tools("get_weather", permission=ASK))
    run = services.run_start(agent=agent, input="Use get_weather for Quito.", actor=alice)
    run = drain(run)
    [tool_step] = _tool_steps(run)
    services.step_decide(step=tool_step, actor=alice, approve=False, message="Not today.")
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert tool_calls == []
    result = sim.bodies()[-1]["messages"][-1]["content"][0]
    assert result["is_error"] is True
    assert "denied" in result["content"] and "Not today." in result["content"]
    with pytest.raises(ValidationError):
        services.step_decide(step=tool_step, actor=alice, approve=True)


def test_cancel_before_the_model_call(make_agent, drain, sim, alice):
    agent = make_agent()
    run = services.run_start(agent=agent, input="Say hi.", actor=alice)
    services.run_cancel(run=run, actor=alice)
    run = drain(run)
    assert run.status == RunStatus.CANCELLED
    assert "Cancelled by alice" in run.error
    assert sim.received == []
    assert _model_steps(run)[0].status == StepStatus.CANCELLED
    with pytest.raises(ValidationError):
        services.run_cancel(run=run, actor=alice)


def test_a_step_whose_run_was_cancelled_is_not_executed(make_agent, sim, alice):
    agent = make_agent()
    run = services.run_start(agent=agent, input="Say hi.", actor=alice)
    step = _model_steps(run)[0]
    # A message that was already on its way when the run was cancelled.
    Run.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED)
    services.step_execute(step_id=step.pk)
    step.refresh_from_db()
    assert step.status == StepStatus.CANCELLED
    assert sim.received == []


def test_run_token_budget_stops_before_the_next_call(make_agent, drain, sim, alice):
    agent = make_agent(tools=_tools("get_weather"))
    run = services.run_start(
        agent=agent, input="Use get_weather for Accra.", actor=alice, budget_tokens=10
    )
    run = drain(run)
    assert run.status == RunStatus.BUDGET_REACHED
    assert run.error.startswith("Run token budget reached")
    assert len(sim.bodies()) == 1  # the second model call never happened
    assert _model_steps(run)[-1].status == StepStatus.CANCELLED


def test_run_cost_budget(make_agent, drain, sim, alice):
    agent = make_agent(tools=_tools("get_weather"))
    run = services.run_start(
        agent=agent,
        input="Use get_weather for Lagos.",
        actor=alice,
        budget_cost_usd=Decimal("0.000001"),
    )
    run = drain(run)
    assert run.status == RunStatus.BUDGET_REACHED
    assert run.error.startswith("Run cost budget reached")


def test_team_monthly_budget(make_agent, drain, sim, alice, team_a):
    agent = make_agent()
    first = drain(services.run_start(agent=agent, input="Say hi.", actor=alice))
    assert first.status == RunStatus.SUCCEEDED
    TeamBudget.objects.create(team=team_a, monthly_tokens=first.total_tokens)
    second = drain(services.run_start(agent=agent, input="Say hi again.", actor=alice))
    assert second.status == RunStatus.BUDGET_REACHED
    assert second.error.startswith("Team monthly token budget reached")
    assert len(sim.bodies()) == 1


def test_a_call_waiting_for_the_rate_limit_notes_when_it_goes_out(
    make_agent, drain, sim, alice, settings
):
    settings.AGENTOPS_RATE_WAIT_NOTICE_S = 0.5
    sim.fail_next(429, retry_after=1)  # holds the team's bucket for a second
    run = drain(services.run_start(agent=make_agent(), input="Say hi.", actor=alice))
    assert run.status == RunStatus.SUCCEEDED, run.error
    [step] = _model_steps(run)
    assert step.attempts == 2
    # The second attempt waited for the hold: its step said until when while it waited.
    assert step.claimed_at < step.not_before <= step.finished_at
    assert step.rate_limit_wait_until is None  # done: not waiting any more


def test_transient_error_is_retried(make_agent, drain, sim, alice):
    agent = make_agent()
    sim.fail_next(529)
    run = drain(services.run_start(agent=agent, input="Say hi.", actor=alice))
    assert run.status == RunStatus.SUCCEEDED, run.error
    [step] = _model_steps(run)
    assert step.attempts == 2
    assert run.retries == 1
    assert sim.step_counts() == {str(step.pk): 2}


def test_repeated_transient_errors_fail_clearly(make_agent, drain, sim, alice, settings):
    settings.AGENTOPS_STEP_MAX_ATTEMPTS = 3
    agent = make_agent()
    sim.fail_next(529, times=3)
    run = drain(services.run_start(agent=agent, input="Say hi.", actor=alice))
    assert run.status == RunStatus.FAILED
    assert "failed 3 times; giving up" in run.error
    assert _model_steps(run)[0].status == StepStatus.FAILED


def test_permanent_error_fails_without_retry(make_agent, drain, sim, alice):
    agent = make_agent()
    sim.fail_next(400, message="messages: bad request")
    run = drain(services.run_start(agent=agent, input="Say hi.", actor=alice))
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("The model call failed")
    assert _model_steps(run)[0].attempts == 1


def test_a_succeeded_step_is_never_executed_again(make_agent, drain, sim, alice):
    agent = make_agent()
    run = drain(services.run_start(agent=agent, input="Say hi.", actor=alice))
    [step] = _model_steps(run)
    assert services.step_execute(step_id=step.pk) is None
    assert len(sim.received) == 1


def test_redelivery_loop_ends_after_max_attempts(make_agent, sim, alice, settings):
    settings.AGENTOPS_STEP_MAX_ATTEMPTS = 2
    agent = make_agent()
    run = services.run_start(agent=agent, input="Say hi.", actor=alice)
    step = _model_steps(run)[0]
    Step.objects.filter(pk=step.pk).update(attempts=2)  # two workers died on it already
    services.step_execute(step_id=step.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "Gave up after 2 attempts" in run.error
    assert sim.received == []


def test_sweeper_requeues_a_step_stuck_past_its_deadline(make_agent, drain, sim, alice):
    agent = make_agent()
    run = services.run_start(agent=agent, input="Say hi.", actor=alice)
    step = _model_steps(run)[0]
    past = timezone.now() - timedelta(seconds=5)
    Step.objects.filter(pk=step.pk).update(status=StepStatus.RUNNING, attempts=1, deadline=past)
    assert services.steps_sweep() == (1, 0, 0)
    step.refresh_from_db()
    assert step.status == StepStatus.QUEUED
    assert "sweeper" in step.error
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED
    assert _model_steps(run)[0].attempts == 2


def test_sweeper_fails_a_step_that_keeps_getting_lost(make_agent, sim, alice, settings):
    settings.AGENTOPS_STEP_MAX_ATTEMPTS = 3
    agent = make_agent()
    run = services.run_start(agent=agent, input="Say hi.", actor=alice)
    step = _model_steps(run)[0]
    past = timezone.now() - timedelta(seconds=5)
    Step.objects.filter(pk=step.pk).update(status=StepStatus.RUNNING, attempts=3, deadline=past)
    assert services.steps_sweep() == (0, 0, 1)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "Gave up after 3 attempts" in run.error


def test_sweeper_resends_queued_steps_whose_message_was_lost(make_agent, alice):
    agent = make_agent()
    run = services.run_start(agent=agent, input="Say hi.", actor=alice)
    step = _model_steps(run)[0]
    old = timezone.now() - timedelta(minutes=10)
    Step.objects.filter(pk=step.pk).update(enqueued_at=old)
    assert services.steps_sweep(requeue_after_s=60) == (0, 1, 0)
    step.refresh_from_db()
    assert step.enqueued_at > old
    # A step waiting for its retry delay is left alone.
    Step.objects.filter(pk=step.pk).update(
        enqueued_at=old, not_before=timezone.now() + timedelta(seconds=30)
    )
    assert services.steps_sweep(requeue_after_s=60) == (0, 0, 0)


def test_a_late_result_from_a_replaced_worker_is_discarded(make_agent, sim, alice):
    from agentops.llm.types import ModelResult

    agent = make_agent()
    run = services.run_start(agent=agent, input="Say hi.", actor=alice)
    step = _model_steps(run)[0]
    # Attempt 1 was claimed, then the sweeper handed the step to attempt 2.
    Step.objects.filter(pk=step.pk).update(status=StepStatus.RUNNING, attempts=2)
    step.attempts = 1
    late = ModelResult(
        content=[{"type": "text", "text": "late"}],
        stop_reason="end_turn",
        usage={"input_tokens": 5, "output_tokens": 5},
        cost_usd=Decimal("0.01"),
        latency_ms=10,
        request_id="req_late",
        model="m",
    )
    services._record_model_result(step, late)
    step.refresh_from_db()
    run.refresh_from_db()
    assert step.status == StepStatus.RUNNING and step.response == {}
    assert run.status == RunStatus.QUEUED and run.model_calls == 0 and not run.output
    # The lock helper the other checkpoints use applies the same rule.
    step.attempts = 1
    with services.inline_execution():
        assert services._lock_for_checkpoint(step)[2] is None


def _usage_rows(step):
    from agentops.llm.models import ModelCallRecord

    return list(ModelCallRecord.objects.filter(step_id=str(step.pk)))


def test_each_model_call_is_recorded_once_with_its_step(make_agent, drain, sim, alice, tool_calls):
    agent = make_agent(tools=_tools("get_weather"))
    run = drain(
        services.run_start(
            agent=agent, input="Report on the weather. [sim:steps=3]", actor=alice, max_turns=3
        )
    )
    assert run.status == RunStatus.SUCCEEDED, run.error
    for step in _model_steps(run):
        (row,) = _usage_rows(step)
        assert (row.input_tokens, row.output_tokens) == (step.input_tokens, step.output_tokens)
        assert row.cost_usd == step.cost_usd and row.label == f"run {run.pk}"


def test_a_checkpoint_that_fails_still_records_its_paid_call(
    make_agent, drain, sim, alice, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("bug after the call")

    monkeypatch.setattr(services, "_continue_after_model", broken)
    run = drain(services.run_start(agent=make_agent(), input="Say hi.", actor=alice))
    assert run.status == RunStatus.FAILED and "bug after the call" in run.error
    (step,) = _model_steps(run)
    (row,) = _usage_rows(step)
    assert row.output_tokens > 0 and len(sim.received) == 1


def test_a_usage_row_that_cannot_be_written_does_not_lose_the_answer(
    make_agent, drain, sim, alice, caplog
):
    # The row goes in the checkpoint's transaction: its failure must not fail the step,
    # which would call the model again.
    from agentops.llm.models import ModelCallRecord

    table = ModelCallRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
    run = drain(services.run_start(agent=make_agent(), input="Say hi.", actor=alice))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output and run.model_calls == 1 and len(sim.received) == 1
    assert "Could not record a model call" in caplog.text
    assert not ModelCallRecord.objects.filter(label=f"run {run.pk}").exists()


def test_rerun_same_and_latest_version(make_agent, drain, sim, alice):
    from agentops.agents.services import agent_update

    agent = make_agent()
    first = drain(services.run_start(agent=agent, input="Say hi.", actor=alice, max_turns=5))
    agent_update(
        agent=agent,
        actor=alice,
        name=agent.name,
        model="claude-haiku-4-5",
        system_prompt="Be brief.",
        max_tokens=512,
    )
    agent.refresh_from_db()
    same = services.run_rerun(run=first, actor=alice)
    latest = services.run_rerun(run=first, actor=alice, latest_version=True)
    assert same.agent_version_id == first.agent_version_id
    assert latest.agent_version_id == agent.current_version_id != first.agent_version_id
    assert same.rerun_of == first and same.input == first.input and same.max_turns == 5


def test_run_start_refuses_bad_requests(make_agent, alice, team_a):
    agent = make_agent()
    with pytest.raises(ValidationError):
        services.run_start(agent=agent, input="   ", actor=alice)
    other = make_agent()
    with pytest.raises(ValidationError):
        services.run_start(agent=agent, input="hi", actor=alice, version=other.current_version)


def test_sweeper_is_a_periodic_task():
    task = PeriodicTask.objects.get(task="agentops.runs.steps_sweep")
    assert task.enabled and task.interval.every > 0


def test_a_redis_outage_around_the_call_is_retried(make_agent, drain, sim, alice, monkeypatch):
    import redis

    from agentops.llm import services as llm_services

    real_call = llm_services.model_call
    failures = iter([redis.exceptions.ConnectionError("Connection closed by server.")])

    def flaky_call(**kwargs):
        failure = next(failures, None)
        if failure:
            raise failure
        return real_call(**kwargs)

    monkeypatch.setattr(services, "model_call", flaky_call)
    run = drain(services.run_start(agent=make_agent(), input="Say hi.", actor=alice))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert _model_steps(run)[0].attempts == 2 and run.retries == 1


def test_sim_steps_marker_gives_a_run_of_exactly_n_model_calls(
    make_agent, drain, sim, alice, tool_calls
):
    agent = make_agent(tools=_tools("get_weather"))
    run = services.run_start(
        agent=agent, input="Report on the weather. [sim:steps=5]", actor=alice, max_turns=5
    )
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    stops = [step.stop_reason for step in _model_steps(run)]
    assert stops == ["tool_use"] * 4 + ["end_turn"]
    assert len(_tool_steps(run)) == 4


def test_a_threads_model_context_is_read_once_and_no_unused_capability_is_asked(
    make_agent, drain, sim, alice, tool_calls
):
    agent = make_agent(tools=_tools("get_weather"))
    run = services.run_start(
        agent=agent, input="Report on the weather. [sim:steps=4]", actor=alice, max_turns=4
    )
    with CaptureQueriesContext(connection) as queries:
        run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    sql = [query["sql"] for query in queries.captured_queries]
    memory_reads = [q for q in sql if "memory_storeattachment" in q]
    assert len(memory_reads) == 1  # the first model call only, not each of the four
    # Without a rubric or a workflow, the run's and its thread's flags answer for the
    # outcome loop's and delegation's hooks.
    assert not run.in_workflow and not run.has_graded_threads
    tables = ("outcomes_evaluation", "workflows_workflowrun", "workflows_delegation")
    assert [q for q in sql if any(table in q for table in tables)] == []
