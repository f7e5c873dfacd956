"""`manage.py bench fanout`: a fan-out workflow of N specialists on real Celery workers
against the simulator server with a fixed latency L.

Phase 1 (no binding limit): the critical path is the lead's model calls plus one child's,
each L (a fan-out lead makes one call, after the children; each child makes one), so
`ratio` = makespan / critical path shows what orchestration adds: dispatch, checkpoints
under the run's row lock, the last child queueing the lead.

Phase 2 (a binding requests-per-minute limit on both the server and our limiter): the
children and the lead need more requests than the bucket's burst holds, so the makespan is
bounded by the refill time. `t_min_s` is that bound: the excess requests over the refill
rate (the lead's request also waits for the last child), plus one latency;
`makespan_ratio` = makespan / t_min_s, and `http_429` counts refusals the server sent.

The workers are `celery worker` subprocesses on this process's database and broker; a
throwaway team holds the agents and the workflow and is deleted afterwards. Each phase runs
the workflow once unmeasured first (phase 1's is `cold_makespan_s`), so the figures are the
steady state of workers whose threads already hold their database connections; phase 2 then
waits one burst (AGENTOPS_RATE_BURST_S) for the buckets the warm-up spent to refill.
"""

import logging
import os
import signal
import subprocess
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction

from agentops.celery import app
from agentops.llm.benchmarks import celery_worker_command, register, worker_environment

WARMUP_S = 3
TARGETS = {"ratio": 1.2, "http_429": 0, "makespan_ratio": 1.05}
ROOT = Path(__file__).resolve().parent.parent.parent


class _Workers:
    """A `celery worker` subprocess (threads pool) with the given environment."""

    def __init__(self, *, concurrency, env):
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - open while the worker lives
            prefix="agentops-bench-fanout-", suffix=".log", delete=False
        )
        command = celery_worker_command(
            name=f"bench-fanout-{uuid.uuid4().hex[:8]}", concurrency=concurrency
        )
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def _environment(*, base_url, api_key, rpm, itpm, otpm, queue, threads):
    return worker_environment(
        # The worker's threads, for the settings that follow them (the database pool).
        AGENTOPS_WORKER_CONCURRENCY=str(threads),
        # A private queue: a production worker on the same broker never takes these steps.
        AGENTOPS_CELERY_QUEUE=queue,
        ANTHROPIC_BASE_URL=base_url,
        # A key of its own per phase gives the phase fresh rate-limit buckets.
        ANTHROPIC_API_KEY=api_key,
        AGENTOPS_RATE_DEFAULT_RPM=str(rpm),
        AGENTOPS_RATE_DEFAULT_ITPM=str(itpm),
        AGENTOPS_RATE_DEFAULT_OTPM=str(otpm),
        AGENTOPS_RATE_MAX_WAIT_S="600",
        AGENTOPS_LOG_LEVEL="WARNING",
    )


def _setup(children, model):
    from agentops.agents.services import agent_create
    from agentops.teams.models import Team

    from .models import WorkflowMode
    from .services import Specialist, workflow_create

    with transaction.atomic():
        team = Team.objects.create(
            name=f"bench fanout {uuid.uuid4().hex[:8]}", slug=f"bench-{uuid.uuid4().hex[:12]}"
        )

        def agent(name, max_tokens, prompt):
            return agent_create(
                team=team,
                actor=None,
                name=name,
                model=model,
                system_prompt=prompt,
                max_tokens=max_tokens,
            )

        lead = agent("Lead", 16_000, "You lead the specialists and combine their answers.")
        roster = [
            Specialist(
                agent=agent(f"Specialist {n:02d}", 512, f"You are specialist {n}."),
                role_description=f"covers aspect {n} of the question.",
            )
            for n in range(children)
        ]
        workflow = workflow_create(
            team=team,
            actor=None,
            name="Fan-out benchmark",
            lead_agent=lead,
            roster=roster,
            mode=WorkflowMode.FAN_OUT,
            max_parallel=min(children, 50),
            max_children=max(children, 1),
        )
    return team, workflow


def _run_once(workflow, *, timeout_s, log):
    from agentops.runs.models import Run

    from .services import workflow_run_start

    started = time.time()
    run = workflow_run_start(
        workflow=workflow, input="Assess the trade-offs of moving our service to a new region."
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = Run.objects.get(pk=run.pk)
        if not run.is_active:
            break
        time.sleep(0.02)
    finished = time.time()
    if run.is_active:
        raise RuntimeError(f"run {run.pk} did not finish within {timeout_s} s")
    if run.status != "succeeded":
        raise RuntimeError(f"run {run.pk} ended {run.status}: {run.error}")
    log(f"run {run.pk}: {run.model_calls} model calls in {finished - started:.2f} s")
    return run, finished - started


def _phase(
    workflow,
    *,
    server,
    api_key,
    limits,
    processes,
    concurrency,
    timeout_s,
    log,
    rest_s=0.0,
):
    """Run the workflow on fresh workers, once unmeasured first (the workers' threads open
    their database connections and clients), wait `rest_s` (for the rate-limit buckets the
    warm-up spent to refill), then measured; return (run, makespan, cold makespan)."""
    env = _environment(
        base_url=server.url,
        api_key=api_key,
        queue=app.conf.task_default_queue,
        threads=concurrency,
        **limits,
    )
    # Several processes, as a deployment scales out: one Python process's threads share one
    # interpreter lock, and each model call costs some CPU (the SDK, JSON, the database).
    workers = [_Workers(concurrency=concurrency, env=env) for _ in range(processes)]
    try:
        time.sleep(WARMUP_S)  # let the workers connect before the clock starts
        _, cold = _run_once(workflow, timeout_s=timeout_s, log=log)
        if rest_s:
            log(f"waiting {rest_s:.0f} s for the buckets to refill")
            time.sleep(rest_s)
        run, makespan = _run_once(workflow, timeout_s=timeout_s, log=log)
        return run, makespan, cold
    finally:
        for worker in workers:
            worker.stop()


def _timeline(run):
    """Where the unlimited phase's makespan went, in seconds from the run's creation, read
    from its steps: the children's first steps queued and claimed, their model calls under way (a
    call's start is its end minus its latency), their calls answered, and the lead's
    synthesis queued by the last child's checkpoint, its call under way and answered, and
    the run's end. `checkpoints_s` is the gap between the last answer and the synthesis
    queued: the children's checkpoints, which take the run's row lock one after another."""
    from agentops.runs.models import StepKind, ThreadRole

    def since_start(moment):
        return round((moment - run.created_at).total_seconds(), 3)

    steps = list(run.steps.filter(kind=StepKind.MODEL_CALL).select_related("thread"))
    children = [step for step in steps if step.thread.role != ThreadRole.LEAD]
    synthesis = max(
        (step for step in steps if step.thread.role == ThreadRole.LEAD),
        key=lambda step: step.sequence,
    )
    calls_started = max(
        step.finished_at - timedelta(milliseconds=step.latency_ms) for step in children
    )
    calls_answered = max(step.finished_at for step in children)
    return {
        "children_queued_s": since_start(max(step.enqueued_at for step in children)),
        "children_claimed_s": since_start(max(step.claimed_at for step in children)),
        "children_calls_started_s": since_start(calls_started),
        "children_answered_s": since_start(calls_answered),
        "lead_resumed_s": since_start(synthesis.enqueued_at),
        "lead_call_started_s": since_start(
            synthesis.finished_at - timedelta(milliseconds=synthesis.latency_ms)
        ),
        "lead_answered_s": since_start(synthesis.finished_at),
        "run_finished_s": since_start(run.finished_at),
        "checkpoints_s": round((synthesis.enqueued_at - calls_answered).total_seconds(), 3),
    }


def _teardown(team):
    """Delete the throwaway team; runs first, since they pin agent and workflow versions."""
    from agentops.runs.models import Run

    from .models import Workflow

    with transaction.atomic():
        Run.objects.filter(team=team).delete()
        Workflow.objects.filter(team=team).delete()
        team.delete()


@register(
    "fanout",
    help="fan-out workflow on real workers against the simulator server",
    arguments=[
        ("--children", {"type": int, "default": 50, "help": "specialists in the fan-out"}),
        ("--fanout-latency-ms", {"type": float, "default": 1000.0, "help": "latency L"}),
        ("--fanout-rpm", {"type": int, "default": 40, "help": "the binding limit of phase 2"}),
        ("--fanout-model", {"default": "claude-haiku-4-5"}),
        ("--fanout-processes", {"type": int, "default": 2, "help": "worker processes"}),
    ],
)
def bench_fanout(options, log):
    from agentops.llm.simulator.server import start_simulator_server

    children = options["children"]
    if not 1 <= children <= 200:
        raise ValueError("--children must be between 1 and 200")
    latency_ms = options["fanout_latency_ms"]
    latency_s = latency_ms / 1000
    rpm = options["fanout_rpm"]
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    team, workflow = _setup(children, options["fanout_model"])
    previous_queue = app.conf.task_default_queue
    app.conf.task_default_queue = f"agentops-bench-fanout-{uuid.uuid4().hex[:8]}"
    processes = max(options["fanout_processes"], 1)
    concurrency = -(-(children + 1) // processes) + 2
    unlimited = {"rpm": 10**6, "itpm": 10**9, "otpm": 10**9}
    binding = {"rpm": rpm, "itpm": 10**9, "otpm": 10**9}
    result = {"children": children, "latency_ms": latency_ms, "worker_processes": processes}
    try:
        server = start_simulator_server(latency_ms=latency_ms, **unlimited)
        try:
            run, makespan, cold = _phase(
                workflow,
                server=server,
                api_key=f"bench-{uuid.uuid4().hex}",
                limits=unlimited,
                processes=processes,
                concurrency=concurrency,
                timeout_s=120,
                log=log,
            )
        finally:
            server.stop()
        lead_calls = run.threads.get(role="lead").steps.filter(kind="model_call").count()
        critical_path = (lead_calls + 1) * latency_s
        result.update(
            {
                "makespan_s": round(makespan, 3),
                "critical_path_s": round(critical_path, 3),
                "ratio": round(makespan / critical_path, 4),
                "cold_makespan_s": round(cold, 3),
                "model_calls": run.model_calls,
                "timeline": _timeline(run),
            }
        )

        server = start_simulator_server(latency_ms=latency_ms, **binding)
        try:
            run, makespan, _ = _phase(
                workflow,
                server=server,
                api_key=f"bench-{uuid.uuid4().hex}",
                limits=binding,
                # The warm-up spends both buckets (ours and the server's): full again one
                # burst later.
                rest_s=settings.AGENTOPS_RATE_BURST_S + 2,
                processes=processes,
                concurrency=concurrency,
                timeout_s=600,
                log=log,
            )
            stats = server.stats_snapshot()
        finally:
            server.stop()
        burst = rpm * settings.AGENTOPS_RATE_BURST_S / 60
        rate = rpm / 60
        # The children's requests beyond the burst wait for refill; the lead's request waits
        # for that refill too, and for the last child's answer.
        children_ready = max(children - burst, 0) / rate + latency_s
        lead_admitted = max(max(children + 1 - burst, 0) / rate, children_ready)
        t_min = lead_admitted + latency_s
        result["limited"] = {
            "rpm": rpm,
            "http_429": int(stats.get("by_status", {}).get("429", 0)),
            "makespan_s": round(makespan, 3),
            "t_min_s": round(t_min, 3),
            "makespan_ratio": round(makespan / t_min, 4),
        }
        result["http_429"] = result["limited"]["http_429"]
        result["t_min_s"] = result["limited"]["t_min_s"]
        result["makespan_ratio"] = result["limited"]["makespan_ratio"]
    finally:
        app.conf.task_default_queue = previous_queue
        _teardown(team)
    result["targets"] = TARGETS
    result["targets_met"] = (
        result["ratio"] <= TARGETS["ratio"]
        and result["http_429"] == TARGETS["http_429"]
        and result["makespan_ratio"] <= TARGETS["makespan_ratio"]
    )
    log(f"done: {result}")
    return result
