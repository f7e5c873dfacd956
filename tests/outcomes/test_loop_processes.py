"""The outcome loop on a real Celery worker subprocess (real Redis and PostgreSQL) talking to
the simulator server over HTTP: revise then pass, the cap, a grader error, a cancel."""

import pytest

from agentops.llm.simulator.server import start_simulator_server
from agentops.outcomes import services as outcomes
from agentops.outcomes.demo import DEMO_RUBRIC, REFUND_TASK
from agentops.outcomes.loop import run_start_graded
from agentops.outcomes.models import Verdict
from agentops.runs.models import Run, RunStatus, StepKind, StepStatus, ThreadRole
from agentops.runs.services import run_cancel
from tests.runs.processes import (
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


@pytest.fixture
def sim_server():
    server = start_simulator_server(latency_ms=50, rpm=100_000, itpm=10**9, otpm=10**9)
    yield server
    server.stop()


def test_a_graded_run_revises_then_passes_on_a_worker(
    make_agent, team_a, alice, sim_server, private_queue
):
    rubric = outcomes.rubric_create(team=team_a, actor=alice, **DEMO_RUBRIC)
    agent = make_agent(name="Support")
    env = worker_env(redis_url=broker_url(), model_base_url=sim_server.url)
    worker = Worker(env, name="loop", queue=private_queue)
    try:
        run = run_start_graded(
            rubric=rubric,
            agent=agent,
            input="A customer asks why their refund has not arrived yet. Reply to them.",
            actor=alice,
        )
        run = wait_for(
            lambda: (r := Run.objects.get(pk=run.pk)) and not r.is_active and r,
            timeout=60,
            message="the graded run to finish on the worker",
        )
        assert run.status == RunStatus.SUCCEEDED, (run.error, worker.output())
        evaluation = run.evaluation
        assert evaluation.verdict == Verdict.SATISFIED
        assert list(evaluation.iterations.order_by("number").values_list("verdict", flat=True)) == [
            Verdict.NEEDS_REVISION,
            Verdict.SATISFIED,
        ]
        steps = run.steps.filter(kind=StepKind.MODEL_CALL).order_by("pk")
        assert [s.thread.role for s in steps] == [
            ThreadRole.LEAD,
            ThreadRole.GRADER,
            ThreadRole.LEAD,
            ThreadRole.GRADER,
        ]
        assert all(s.status == StepStatus.SUCCEEDED and s.attempts == 1 for s in steps)
    finally:
        worker.stop()


def _graded_run_on_a_worker(
    *, rubric_fields, agent, alice, team_a, sim_server, queue, task, while_running=None
):
    rubric = outcomes.rubric_create(team=team_a, actor=alice, **rubric_fields)
    env = worker_env(redis_url=broker_url(), model_base_url=sim_server.url)
    worker = Worker(env, name="loop", queue=queue)
    try:
        run = run_start_graded(rubric=rubric, agent=agent, input=task, actor=alice)
        if while_running:
            while_running(run)
        return wait_for(
            lambda: (r := Run.objects.get(pk=run.pk)) and not r.is_active and r,
            timeout=60,
            message="the graded run to finish on the worker",
        )
    finally:
        worker.stop()


def test_a_graded_run_hits_the_cap_on_a_worker(
    make_agent, team_a, alice, sim_server, private_queue
):
    run = _graded_run_on_a_worker(
        rubric_fields={**DEMO_RUBRIC, "max_iterations": 1},
        agent=make_agent(name="Support"),
        alice=alice,
        team_a=team_a,
        sim_server=sim_server,
        queue=private_queue,
        task=REFUND_TASK,
    )
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.evaluation.verdict == Verdict.MAX_ITERATIONS_REACHED
    assert run.evaluation.iterations.count() == 1


def test_a_malformed_grader_ends_in_grader_error_on_a_worker(
    make_agent, team_a, alice, sim_server, private_queue, settings
):
    run = _graded_run_on_a_worker(
        rubric_fields=DEMO_RUBRIC,
        agent=make_agent(name="Support"),
        alice=alice,
        team_a=team_a,
        sim_server=sim_server,
        queue=private_queue,
        task=f"{REFUND_TASK} [sim:grader_malformed]",
    )
    assert run.status == RunStatus.SUCCEEDED, run.error  # the output stands, ungraded
    assert run.evaluation.verdict == Verdict.GRADER_ERROR
    graders = run.steps.filter(kind=StepKind.MODEL_CALL, thread__role=ThreadRole.GRADER)
    assert graders.count() == settings.AGENTOPS_GRADER_ATTEMPTS


def test_cancelling_mid_loop_on_a_worker_interrupts_the_evaluation(
    make_agent, team_a, alice, sim_server, private_queue
):
    def cancel_once_grading(run):
        wait_for(
            lambda: run.steps.filter(thread__role=ThreadRole.GRADER).exists(),
            timeout=60,
            message="the grader to start",
        )
        run_cancel(run=Run.objects.get(pk=run.pk), actor=alice)

    run = _graded_run_on_a_worker(
        rubric_fields=DEMO_RUBRIC,
        agent=make_agent(name="Support"),
        alice=alice,
        team_a=team_a,
        sim_server=sim_server,
        queue=private_queue,
        task=REFUND_TASK,
        while_running=cancel_once_grading,
    )
    assert run.status == RunStatus.CANCELLED
    assert run.evaluation.verdict == Verdict.INTERRUPTED
