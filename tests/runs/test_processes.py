"""Crash recovery with real processes: a Celery worker subprocess on real Redis and
PostgreSQL, talking to the simulator server over HTTP with latency."""

import json
import time
import urllib.request

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from agentops.llm.simulator.server import start_simulator_server
from agentops.runs import services
from agentops.runs.models import Run, RunStatus, Step, StepKind, StepStatus

from .processes import (
    RedisServer,
    Worker,
    broker_url,
    needs_postgres_and_redis,
    wait_for,
    worker_env,
)

pytestmark = [
    pytest.mark.slow,
    needs_postgres_and_redis,
    pytest.mark.django_db(transaction=True),
]

LATENCY_MS = 400
# A claimed step whose worker vanished is re-queued this long after its claim.
RECOVERY = {
    "AGENTOPS_STEP_DEADLINE_S": 3,
    "AGENTOPS_STEP_REQUEUE_AFTER_S": 2,
}
TWO_TOOLS = [
    {"name": "lookup_order", "permission": "allow"},
    {"name": "lookup_invoice", "permission": "allow"},
]
TASK = "Call lookup_order and lookup_invoice for number 12."


@pytest.fixture
def sim_server():
    server = start_simulator_server(latency_ms=LATENCY_MS, rpm=100_000, itpm=10**9, otpm=10**9)
    yield server
    server.stop()


@pytest.fixture
def sweeper_every_second(db):
    # What an admin does in the beat schedule: sweep every second instead of every 30.
    schedule, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(
        name="agentops: sweep run steps",
        defaults={"task": "agentops.runs.steps_sweep", "interval": schedule, "enabled": True},
    )


def _stats(server):
    with urllib.request.urlopen(f"{server.url}/_stats", timeout=5) as response:  # noqa: S310
        return json.load(response)["by_step"]


def _model_step(run, index):
    steps = list(Step.objects.filter(run=run, kind=StepKind.MODEL_CALL).order_by("sequence"))
    return steps[index] if len(steps) > index else None


def _assert_no_completed_step_called_twice(run, by_step, interrupted):
    for step in Step.objects.filter(run=run, kind=StepKind.MODEL_CALL):
        assert step.status == StepStatus.SUCCEEDED
        calls = by_step.get(str(step.pk), 0)
        if step.pk in interrupted:
            # Claimed twice; the lost worker may or may not have reached the model.
            assert step.attempts == 2 and 1 <= calls <= 2, (step.pk, step.attempts, by_step)
        else:
            assert step.attempts == 1 and calls == 1, (step.pk, step.attempts, by_step)


@pytest.fixture
def two_webhooks(webhook_tool):
    return [webhook_tool("lookup_order"), webhook_tool("lookup_invoice")]


def test_worker_killed_mid_run(
    make_agent, alice, sim_server, sweeper_every_second, two_webhooks, private_queue
):
    env = worker_env(redis_url=broker_url(), model_base_url=sim_server.url, **RECOVERY)
    agent = make_agent(tools=TWO_TOOLS)
    first = Worker(env, name="first", queue=private_queue, beat=True)
    second = None
    try:
        run = services.run_start(
            agent=agent,
            input=TASK,
            actor=alice,
        )
        # Kill the worker while the second model call is in flight: the first model call
        # and both tool calls are complete by then.
        in_flight = wait_for(
            lambda: (s := _model_step(run, 1)) and s.status == StepStatus.RUNNING and s,
            timeout=30,
            message="the second model call to start",
        )
        time.sleep(LATENCY_MS / 1000 / 3)  # into the model call's latency
        completed_before = {str(s.pk) for s in Step.objects.filter(run=run, status="succeeded")}
        assert len(completed_before) == 3
        first.kill()
        before_restart = _stats(sim_server)
        assert all(before_restart.get(pk, 0) <= 1 for pk in completed_before)

        second = Worker(env, name="second", queue=private_queue, beat=True)
        run = wait_for(
            lambda: (r := Run.objects.get(pk=run.pk)) and not r.is_active and r,
            timeout=40,
            message="the run to finish on the second worker",
        )
        assert run.status == RunStatus.SUCCEEDED, (run.error, second.output())
        by_step = _stats(sim_server)
        _assert_no_completed_step_called_twice(run, by_step, interrupted={in_flight.pk})
        in_flight.refresh_from_db()
        assert "sweeper" in in_flight.error or in_flight.attempts == 2
        tool_steps = Step.objects.filter(run=run, kind=StepKind.TOOL_CALL)
        assert [s.attempts for s in tool_steps] == [1, 1]
        # Each webhook was called once, with its step id.
        received = sorted(step for hook in two_webhooks for step in hook.received_steps)
        assert received == sorted(str(s.pk) for s in tool_steps)
    finally:
        first.stop()
        if second:
            second.stop()


def test_redis_restarted_mid_run(
    make_agent, alice, sim_server, sweeper_every_second, two_webhooks, private_queue
):
    redis_server = RedisServer(6390)
    env = worker_env(redis_url=redis_server.url, model_base_url=sim_server.url, **RECOVERY)
    agent = make_agent(tools=TWO_TOOLS)
    worker = Worker(env, name="redis-restart", queue=private_queue, beat=True)
    try:
        # This test process publishes to the shared broker, not to port 6390: start the run
        # without sending it, and let the sweeper send what is queued.
        with services.inline_execution():
            run = services.run_start(agent=agent, input=TASK, actor=alice)
        wait_for(
            lambda: (s := _model_step(run, 0)) and s.status == StepStatus.RUNNING,
            timeout=30,
            message="the first model call to start",
        )
        redis_server.restart()  # every message and every unacknowledged delivery is gone

        def finished():
            # Celery 5.7's worker can exit on a lost broker connection while a task is
            # unacknowledged; deployments run it under a restart policy, and so does this.
            worker.supervise()
            current = Run.objects.get(pk=run.pk)
            return not current.is_active and current

        run = wait_for(finished, timeout=45, message="the run to finish after the Redis restart")
        assert run.status == RunStatus.SUCCEEDED, (run.error, worker.output())
        by_step = _stats(sim_server)
        for step in Step.objects.filter(run=run, kind=StepKind.MODEL_CALL):
            # A step is called again only if its result was never recorded (the rate
            # limiter's Redis vanished around the call): one call per attempt, at most.
            assert 1 <= by_step.get(str(step.pk), 0) <= step.attempts, (step.pk, by_step)
        assert run.tool_calls == 2
    finally:
        worker.stop()
        redis_server.stop()
