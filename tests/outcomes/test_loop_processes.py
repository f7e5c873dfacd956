"""The outcome loop on a real Celery worker subprocess (real Redis and PostgreSQL) talking to
the simulator server over HTTP: a graded run revises once, then passes."""

import pytest

from agentops.llm.simulator.server import start_simulator_server
from agentops.outcomes import services as outcomes
from agentops.outcomes.demo import DEMO_RUBRIC
from agentops.outcomes.loop import run_start_graded
from agentops.outcomes.models import Verdict
from agentops.runs.models import Run, RunStatus, StepKind, StepStatus, ThreadRole
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
