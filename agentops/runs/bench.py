"""`manage.py bench overhead`: what the durable engine adds to each model step.

A Celery worker subprocess (threads pool, on the configured PostgreSQL and Redis, on a
private queue) executes runs against the simulator server, which answers every call after a
fixed latency. For each model step, overhead = (finished - enqueued) - simulated latency:
the commit and publish of the step, the broker hop, the claim, the client and the HTTP
round trip, and the checkpoint that records the result and creates the next step. Runs are
executed one after another, so no step waits for a busy worker.

The simulator's worker role finishes a run after a paused turn is resumed, so each run here
has two model steps (`pause_turn`, then `end_turn`); `--runs` sets how many runs.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import connection

from agentops.agents.services import agent_create
from agentops.llm.benchmarks import register
from agentops.llm.catalogue import DEFAULT_MODEL
from agentops.llm.simulator.server import start_simulator_server
from agentops.teams.models import Team

from .models import Run, RunStatus, StepKind
from .services import run_start

TARGET_P95_MS = 10
BENCH_TEAM_SLUG = "agentops-bench"
ROOT = Path(__file__).resolve().parents[2]


def _percentile(values, fraction):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _database_url():
    db = connection.settings_dict
    auth = db["USER"] or ""
    if db["PASSWORD"]:
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _start_worker(*, queue, model_url, log_file):
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "ANTHROPIC_BASE_URL": model_url,
        "ANTHROPIC_API_KEY": "sim",  # stands for the simulator server
        "AGENTOPS_CELERY_QUEUE": queue,
        # The team-wide rate limiter is not what this measures; keep it out of the way.
        "AGENTOPS_RATE_DEFAULT_RPM": "1000000",
        "AGENTOPS_RATE_DEFAULT_ITPM": "1000000000",
        "AGENTOPS_RATE_DEFAULT_OTPM": "1000000000",
        "AGENTOPS_LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "agentops",
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        "2",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-Q",
        queue,
        "-n",
        f"{queue}@%h",
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def _wait(run, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if not run.is_active:
            return run
        time.sleep(0.01)
    raise CommandError(f"run {run.pk} did not finish within {timeout_s} s")


@register(
    "overhead",
    help="per-step overhead of the durable run engine (claim, checkpoint, enqueue)",
    arguments=[
        ("--runs", {"type": int, "default": 10, "help": "runs to execute (overhead)"}),
        ("--latency-ms", {"type": float, "default": 150.0, "help": "simulator latency"}),
    ],
)
def bench_overhead(options, log):
    if settings.EMBEDDED or not settings.REDIS_URL:
        raise CommandError(
            "bench overhead measures PostgreSQL and Redis: set DATABASE_URL and REDIS_URL"
        )
    from agentops.celery import app

    latency_ms = float(options.get("latency_ms") or 150.0)
    runs_wanted = int(options.get("runs") or 10)
    queue = f"agentops-bench-{uuid.uuid4().hex[:8]}"
    # This process sends the first step of each run; the worker sends the rest.
    app.conf.task_default_queue = queue
    server = start_simulator_server(latency_ms=latency_ms, rpm=10**6, itpm=10**9, otpm=10**9)
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the worker writes to it
        prefix="agentops-bench-worker-", suffix=".log", delete=False
    )
    worker = _start_worker(queue=queue, model_url=server.url, log_file=log_file)
    team = None
    try:
        owner, _ = get_user_model().objects.get_or_create(username="agentops-bench")
        team, _ = Team.objects.get_or_create(
            slug=BENCH_TEAM_SLUG, defaults={"name": "Benchmark (temporary)"}
        )
        agent = agent_create(
            team=team,
            actor=owner,
            name=f"Bench {queue}",
            model=DEFAULT_MODEL,
            system_prompt="Answer briefly.",
            max_tokens=256,
        )
        task = "Summarise the benchmark plan. [sim:pause_turn]"
        log(f"overhead: warming up the worker (log: {log_file.name})")
        warm = _wait(run_start(agent=agent, input=task, actor=owner), timeout_s=60)
        if warm.status != RunStatus.SUCCEEDED:
            raise CommandError(f"the warm-up run ended {warm.status}: {warm.error}")
        measured = []
        for number in range(runs_wanted):
            run = _wait(run_start(agent=agent, input=task, actor=owner), timeout_s=60)
            if run.status != RunStatus.SUCCEEDED:
                raise CommandError(f"run {number + 1} ended {run.status}: {run.error}")
            measured.append(run.pk)
        overheads, calls, queued, executing = [], [], [], []
        steps = (
            Run.objects.get(pk=pk).steps.filter(kind=StepKind.MODEL_CALL, attempts=1)
            for pk in measured
        )
        for run_steps in steps:
            for step in run_steps:
                wall_ms = (step.finished_at - step.enqueued_at).total_seconds() * 1000
                overheads.append(wall_ms - latency_ms)
                calls.append(step.latency_ms)
                queued.append((step.claimed_at - step.enqueued_at).total_seconds() * 1000)
                executing.append(
                    (step.finished_at - step.claimed_at).total_seconds() * 1000 - latency_ms
                )
        log(f"overhead: {len(overheads)} model steps measured")
        p95 = _percentile(overheads, 0.95)
        return {
            "runs": len(measured),
            "steps": len(overheads),
            "latency_ms": latency_ms,
            "p50_ms": round(statistics.median(overheads), 2),
            "p95_ms": round(p95, 2),
            "max_ms": round(max(overheads), 2),
            "call_p50_ms": statistics.median(calls),
            # Where the overhead goes: enqueued -> claimed (commit, publish, broker, pickup),
            # and claimed -> finished minus the latency (client, HTTP, checkpoint).
            "queue_p50_ms": round(statistics.median(queued), 2),
            "execute_p50_ms": round(statistics.median(executing), 2),
            "target_p95_ms": TARGET_P95_MS,
            "meets_target": p95 <= TARGET_P95_MS,
            "database": connection.vendor,
            "broker": "redis",
        }
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
        log_file.close()
        server.stop()
        if team is not None:
            # The benchmark's rows are scaffolding, not history: remove them.
            Run.objects.filter(team=team).delete()
            team.delete()
