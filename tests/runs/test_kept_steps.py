"""A worker claims the steps its own checkpoints queue (services.step_execute with
keep_for_s), committed for real: the kept step is chosen when it is queued, kept when its
checkpoint commits, and claimed in the round trip of that commit."""

import pytest
from django.db import OperationalError

from agentops.runs import services, tasks
from agentops.runs.models import RunStatus, Step, StepKind, StepStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(monkeypatch):
    """The step ids sent to the broker (nothing executes them)."""
    sent = []
    monkeypatch.setattr(
        tasks.step_execute, "apply_async", lambda args, countdown=None: sent.append(args[0])
    )
    return sent


def _tools(*names):
    return [{"name": name, "permission": "allow"} for name in names]


def _steps(run):
    return list(Step.objects.filter(run=run).order_by("thread_id", "sequence"))


def _weather_run(make_agent, alice, *, steps):
    """A run of `steps` model calls with a tool call between each two, and its first step."""
    agent = make_agent(tools=_tools("get_weather"))
    run = services.run_start(
        agent=agent,
        input=f"Report on the weather. [sim:steps={steps}]",
        actor=alice,
        max_turns=steps,
    )
    [first] = _steps(run)
    return run, first


def test_a_worker_executes_the_steps_its_checkpoints_queue_without_the_broker(
    make_agent, sim, alice, broker
):
    run, first = _weather_run(make_agent, alice, steps=3)
    assert broker == [first.pk]  # the run's first step goes through the broker
    services.step_execute(step_id=first.pk, keep_for_s=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    steps = _steps(run)
    assert [step.kind for step in steps] == [StepKind.MODEL_CALL, StepKind.TOOL_CALL] * 2 + [
        StepKind.MODEL_CALL
    ]
    # Each was committed queued, then claimed by the same conditional update, once.
    assert all(step.status == StepStatus.SUCCEEDED and step.attempts == 1 for step in steps)
    assert all(step.enqueued_at <= step.claimed_at for step in steps)
    assert broker == [first.pk]
    assert sim.step_counts() == {str(step.pk): 1 for step in steps if step.kind == "model_call"}


def test_past_its_keep_time_a_worker_sends_the_next_step_through_the_broker(
    make_agent, sim, alice, broker
):
    run, first = _weather_run(make_agent, alice, steps=3)
    services.step_execute(step_id=first.pk, keep_for_s=1e-9)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    first, tool = _steps(run)
    assert first.status == StepStatus.SUCCEEDED
    assert tool.status == StepStatus.QUEUED and broker == [first.pk, tool.pk]


def test_of_parallel_tool_calls_the_worker_keeps_one_and_sends_the_rest(
    make_agent, sim, alice, broker, tool_calls
):
    agent = make_agent(tools=_tools("get_weather", "get_stock"))
    run = services.run_start(
        agent=agent, input="Use get_weather for Rome and get_stock for SKU X-9.", actor=alice
    )
    [first] = _steps(run)
    services.step_execute(step_id=first.pk, keep_for_s=60)
    _, kept, sent = _steps(run)
    # The first tool ran here; the second waits for another worker, and with it the
    # model's next turn.
    assert kept.status == StepStatus.SUCCEEDED
    assert [name for name, _ in tool_calls] == [kept.tool_name]
    assert sent.status == StepStatus.QUEUED and broker == [first.pk, sent.pk]
    services.step_execute(step_id=sent.pk, keep_for_s=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert broker == [first.pk, sent.pk]


def _counting_claims(monkeypatch, *, fail_after=None):
    claim = services.claim_step
    claims = []

    def counted(step_id, **kwargs):
        claims.append(step_id)
        if fail_after is not None and len(claims) > fail_after:
            raise OperationalError("the database went away")
        return claim(step_id, **kwargs)

    monkeypatch.setattr(services, "claim_step", counted)
    return claims


def _claims_after_commit_fail(monkeypatch):
    monkeypatch.setattr(
        services, "claim_statements", lambda step_id, **kwargs: [("SELECT 1/0", [])]
    )


def test_a_kept_steps_claim_comes_back_with_its_checkpoints_commit(
    make_agent, sim, alice, broker, monkeypatch
):
    run, first = _weather_run(make_agent, alice, steps=3)
    claims = _counting_claims(monkeypatch)
    services.step_execute(step_id=first.pk, keep_for_s=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert claims == [first.pk]  # the other four came with the commit that queued them
    assert all(step.attempts == 1 for step in _steps(run))


def test_a_kept_step_whose_claim_failed_after_the_commit_is_claimed_on_its_own(
    make_agent, sim, alice, broker, monkeypatch
):
    run, first = _weather_run(make_agent, alice, steps=2)
    _claims_after_commit_fail(monkeypatch)
    claims = _counting_claims(monkeypatch)
    services.step_execute(step_id=first.pk, keep_for_s=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error  # every commit stood
    steps = _steps(run)
    assert claims == [step.pk for step in steps] and broker == [first.pk]
    assert sim.step_counts() == {str(step.pk): 1 for step in steps if step.kind == "model_call"}


def test_a_kept_step_the_worker_could_not_claim_goes_to_the_broker(
    make_agent, sim, alice, broker, monkeypatch
):
    run, first = _weather_run(make_agent, alice, steps=2)
    _claims_after_commit_fail(monkeypatch)
    _counting_claims(monkeypatch, fail_after=1)
    with pytest.raises(OperationalError):
        services.step_execute(step_id=first.pk, keep_for_s=60)
    first, tool = _steps(run)
    assert first.status == StepStatus.SUCCEEDED
    # Not lost: still queued, and sent for another worker to claim.
    assert tool.status == StepStatus.QUEUED and broker == [first.pk, tool.pk]


def test_a_kept_step_claimed_with_the_commit_but_not_executed_is_queued_again(
    make_agent, sim, alice, broker, monkeypatch
):
    run, first = _weather_run(make_agent, alice, steps=2)
    execute = services._claim_and_execute

    def lost_before_the_kept_step(step_id, *claimed):
        if claimed:  # its claim came back with the commit
            raise RuntimeError("the worker's thread died before executing it")
        return execute(step_id)

    monkeypatch.setattr(services, "_claim_and_execute", lost_before_the_kept_step)
    with pytest.raises(RuntimeError):
        services.step_execute(step_id=first.pk, keep_for_s=60)
    first, tool = _steps(run)
    # Its claim came back with the commit; it is queued again (the attempt still counts)
    # and sent, not left running until its deadline.
    assert tool.status == StepStatus.QUEUED and tool.attempts == 1
    assert broker == [first.pk, tool.pk]
    monkeypatch.setattr(services, "_claim_and_execute", execute)
    services.step_execute(step_id=tool.pk, keep_for_s=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert sim.step_counts() == {
        str(step.pk): 1 for step in _steps(run) if step.kind == "model_call"
    }


def test_a_kept_step_whose_commit_callbacks_failed_is_queued_again(
    make_agent, sim, alice, broker, monkeypatch
):
    run, first = _weather_run(make_agent, alice, steps=2)

    def callback_fails(self, step_id):
        raise RuntimeError("an on_commit callback failed")

    monkeypatch.setattr(services._KeptStep, "keep", callback_fails)
    services.step_execute(step_id=first.pk, keep_for_s=60)
    first, tool = _steps(run)
    assert first.status == StepStatus.SUCCEEDED  # committed before the callbacks
    assert tool.status == StepStatus.QUEUED and broker == [first.pk, tool.pk]


def test_a_run_starts_when_a_worker_first_claims_one_of_its_steps(make_agent, sim, alice, broker):
    run = services.run_start(agent=make_agent(), input="Say hi.", actor=alice)
    assert run.status == RunStatus.QUEUED and run.started_at is None
    [step] = _steps(run)
    claimed = services.claim_step(step.pk, now=step.enqueued_at, deadline=step.enqueued_at)
    assert claimed.run.status == RunStatus.RUNNING
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.started_at == step.enqueued_at
    # A claim that finds nothing queued starts nothing: a cancelled run stays cancelled.
    run.status = RunStatus.CANCELLED
    run.save()
    assert services.claim_step(step.pk, now=step.enqueued_at, deadline=step.enqueued_at) is None
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
