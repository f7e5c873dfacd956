"""Workflows with real processes: Celery workers (threads pool) on real Redis and
PostgreSQL, the simulator server over HTTP with latency, and celery beat."""

import json
import time
import urllib.request

import pytest
from django_celery_beat.models import IntervalSchedule

from agentops.llm.simulator.server import start_simulator_server
from agentops.runs.models import Run, RunStatus, Step, StepKind, StepStatus, ThreadStatus
from agentops.workflows.models import Delegation, DelegationStatus, ScheduleFire, WorkflowMode
from agentops.workflows.services import schedule_create, workflow_run_start
from tests.runs.processes import Worker, broker_url, wait_for, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LATENCY_MS = 500
RECOVERY = {"AGENTOPS_STEP_DEADLINE_S": 3, "AGENTOPS_STEP_REQUEUE_AFTER_S": 2}


@pytest.fixture
def sim_server():
    server = start_simulator_server(latency_ms=LATENCY_MS, rpm=100_000, itpm=10**9, otpm=10**9)
    yield server
    server.stop()


@pytest.fixture
def sweeper_every_second(db):
    from django_celery_beat.models import PeriodicTask

    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.update_or_create(
        name="agentops: sweep run steps",
        defaults={"task": "agentops.runs.steps_sweep", "interval": every_second, "enabled": True},
    )


def _by_step(server):
    with urllib.request.urlopen(f"{server.url}/_stats", timeout=5) as response:  # noqa: S310
        return json.load(response)["by_step"]


def _finished(run):
    return wait_for(
        lambda: (r := Run.objects.get(pk=run.pk)) and not r.is_active and r,
        timeout=60,
        message=f"run {run.pk} to finish",
    )


def _child_model_spans(run):
    return [
        (step.claimed_at, step.finished_at)
        for step in Step.objects.filter(run=run, kind=StepKind.MODEL_CALL).exclude(
            thread__parent=None
        )
    ]


def test_children_really_overlap_in_time(make_workflow, make_agent, sim_server, private_queue):
    roster = [make_agent(f"Specialist {n}") for n in range(4)]
    workflow = make_workflow(roster=roster, mode=WorkflowMode.FAN_OUT)
    worker = Worker(
        worker_env(redis_url=broker_url(), model_base_url=sim_server.url),
        name="overlap",
        queue=private_queue,
        concurrency=8,
    )
    try:
        run = _finished(workflow_run_start(workflow=workflow, input="Compare four cities."))
        assert run.status == RunStatus.SUCCEEDED, (run.error, worker.output())
        spans = _child_model_spans(run)
        assert len(spans) == 4
        # Every child's model call was in flight at one shared moment.
        assert max(start for start, _ in spans) < min(end for _, end in spans)
        lead_synthesis = Step.objects.get(run=run, thread__parent=None, kind=StepKind.MODEL_CALL)
        assert lead_synthesis.claimed_at >= max(end for _, end in spans)
    finally:
        worker.stop()


def test_sigkill_during_a_fan_out_completes_every_thread_once(
    make_workflow, make_agent, sim_server, sweeper_every_second, private_queue
):
    env = worker_env(redis_url=broker_url(), model_base_url=sim_server.url, **RECOVERY)
    roster = [make_agent(f"Analyst {n}") for n in range(6)]
    workflow = make_workflow(roster=roster, mode=WorkflowMode.FAN_OUT, max_parallel=6)
    first = Worker(env, name="fanout-first", queue=private_queue, beat=True, concurrency=8)
    second = None
    try:
        run = workflow_run_start(workflow=workflow, input="Review six suppliers.")
        wait_for(
            lambda: (
                Step.objects.filter(
                    run=run, kind=StepKind.MODEL_CALL, status=StepStatus.RUNNING
                ).count()
                >= 3
            ),
            timeout=30,
            message="the children's model calls to be in flight",
        )
        time.sleep(LATENCY_MS / 1000 / 3)
        interrupted = set(
            Step.objects.filter(
                run=run, status=StepStatus.RUNNING, kind=StepKind.MODEL_CALL
            ).values_list("pk", flat=True)
        )
        completed_before = set(
            Step.objects.filter(run=run, status=StepStatus.SUCCEEDED).values_list("pk", flat=True)
        )
        first.kill()
        second = Worker(env, name="fanout-second", queue=private_queue, beat=True, concurrency=8)
        run = _finished(run)
        assert run.status == RunStatus.SUCCEEDED, (run.error, second.output())
        by_step = _by_step(sim_server)
        for step in Step.objects.filter(run=run, kind=StepKind.MODEL_CALL):
            assert step.status == StepStatus.SUCCEEDED
            calls = by_step.get(str(step.pk), 0)
            if step.pk in interrupted:
                assert 1 <= calls <= 2 and step.attempts == 2, (step.pk, calls, step.attempts)
            else:
                assert calls == 1 and step.attempts == 1, (step.pk, calls, step.attempts)
        for pk in completed_before:
            assert by_step.get(str(pk), 0) <= 1
        children = run.threads.exclude(parent=None)
        assert children.count() == 6
        assert set(children.values_list("status", flat=True)) == {ThreadStatus.SUCCEEDED}
        for child in children:
            assert child.steps.filter(kind=StepKind.MODEL_CALL).count() == 1
        assert set(Delegation.objects.filter(run=run).values_list("status", flat=True)) == {
            DelegationStatus.SUCCEEDED
        }
        lead = run.threads.get(parent=None)
        assert lead.steps.filter(kind=StepKind.MODEL_CALL).count() == 1
        results = lead.messages[2]["content"]
        assert len(results) == 6 and not any(r["is_error"] for r in results)
        assert interrupted, "the kill should have caught model calls in flight"
    finally:
        first.stop()
        if second:
            second.stop()


def test_a_schedule_fires_through_beat_and_starts_a_run(
    make_workflow, team_a, alice, sim_server, private_queue
):
    schedule = schedule_create(
        team=team_a,
        actor=alice,
        name="Beat test",
        workflow=make_workflow(),
        input="Scheduled digest.",
        kind="interval",
        every_minutes=1,
    )
    # What an admin may do in the Django admin: make the periodic task fire every 2 seconds.
    every_two, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    task = schedule.periodic_task
    task.interval = every_two
    task.save()
    worker = Worker(
        worker_env(redis_url=broker_url(), model_base_url=sim_server.url),
        name="beat",
        queue=private_queue,
        beat=True,
    )
    try:
        fire = wait_for(
            lambda: ScheduleFire.objects.filter(schedule=schedule, run__isnull=False).first(),
            timeout=40,
            message="beat to fire the schedule",
        )
        run = _finished(fire.run)
        assert run.status == RunStatus.SUCCEEDED, (run.error, worker.output())
        assert run.trigger == "schedule"
        assert run.workflow_run.workflow == schedule.workflow
    finally:
        worker.stop()
