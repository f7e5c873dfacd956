"""`manage.py bench ratelimit`: the real limiter against the simulator server's real limits.

A simulator server on loopback enforces per-minute limits (with real 429s) and adds latency.
Several worker threads make a few hundred calls through `execute_call` (the same path as
`model_call`, minus the database) with the Redis limiter when REDIS_URL is set. The
figures say whether the limiter kept the server from refusing anything while using the
budget fully:

- utilization: on the binding budget, what the calls consumed over what the limits allowed
  between the first and the last admission (burst + rate x that window);
- t_min_s: the physical bound: the time the binding budget needs to refill past its burst
  for the total demand, plus one call's latency (never less than the calls divided among
  the workers allow);
- makespan_ratio: the measured wall time over t_min_s.
"""

import logging
import math
import random
import threading
import time
import uuid

from django.conf import settings

from .benchmarks import register
from .client import Credential, Source, build_client
from .ratelimit import BUDGETS, Limits, LocalLimiter, RedisLimiter, redis_client, send_margin_s

TARGETS = {"http_429": 0, "utilization": 0.95, "makespan_ratio": 1.05}
WORDS = [
    "latency",
    "budget",
    "bucket",
    "token",
    "window",
    "request",
    "worker",
    "cache",
    "answer",
    "review",
    "rubric",
    "memory",
    "agent",
    "grader",
    "outcome",
    "schedule",
    "dream",
]


def _prompt(rng, chars):
    text = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        text.append(word)
        size += len(word) + 1
    return " ".join(text)[:chars]


@register(
    "ratelimit",
    help="rate limiter against the simulator server",
    arguments=[
        ("--calls", {"type": int, "default": 300, "help": "calls to make (ratelimit)"}),
        ("--workers", {"type": int, "default": 8, "help": "concurrent worker threads"}),
        ("--rpm", {"type": int, "default": 600, "help": "requests per minute"}),
        ("--itpm", {"type": int, "default": 200_000, "help": "input tokens per minute"}),
        ("--otpm", {"type": int, "default": 100_000, "help": "output tokens per minute"}),
        ("--latency-ms", {"type": float, "default": 150.0, "help": "simulator latency"}),
        ("--prompt-chars", {"type": int, "default": 4000, "help": "mean prompt size"}),
        ("--max-tokens", {"type": int, "default": 64, "help": "max_tokens per call"}),
        ("--model", {"default": "claude-haiku-4-5"}),
    ],
)
def bench_ratelimit(options, log):
    from .services import execute_call
    from .simulator.server import start_simulator_server

    calls, workers = options["calls"], options["workers"]
    if calls < 1 or workers < 1:
        raise ValueError("--calls and --workers must be at least 1")
    limits = Limits(options["rpm"], options["itpm"], options["otpm"])
    latency_s = options["latency_ms"] / 1000
    # The simulator's buckets hold a full minute, as Anthropic's do; ours the same less the
    # send margin, as in production. The bounds below are the API's (burst_s).
    burst_s = float(settings.AGENTOPS_RATE_BURST_S)
    if settings.REDIS_URL:
        limiter = RedisLimiter(redis_client(), burst_s=burst_s, margin_s=send_margin_s())
        backend = "redis"
    else:
        limiter = LocalLimiter(burst_s=burst_s, margin_s=send_margin_s())
        backend = "in-process"

    # One INFO line per HTTP request would drown the figures.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    server = start_simulator_server(
        latency_ms=options["latency_ms"], rpm=limits.rpm, itpm=limits.itpm, otpm=limits.otpm
    )
    log(f"simulator at {server.url}; limits {limits}; {calls} calls on {workers} workers")
    credential = Credential(
        Source.ENVIRONMENT, api_key="sim", base_url=server.url, bucket=f"bench-{uuid.uuid4().hex}"
    )
    client = build_client(credential)
    rng = random.Random(1)
    prompts = [
        _prompt(rng, int(options["prompt_chars"] * rng.uniform(0.9, 1.1))) for _ in range(calls)
    ]
    outcomes = [None] * calls
    next_index = iter(range(calls))
    index_lock = threading.Lock()

    def worker():
        while True:
            with index_lock:
                index = next(next_index, None)
            if index is None:
                return
            outcomes[index] = execute_call(
                credential=credential,
                client=client,
                limiter=limiter,
                limits=limits,
                model=options["model"],
                messages=[{"role": "user", "content": prompts[index]}],
                max_tokens=options["max_tokens"],
                step_id=f"bench-{index}",
                max_wait_s=600,
            )

    started = time.time()
    try:
        threads = [threading.Thread(target=worker) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        finished = time.time()
        stats = server.stats_snapshot()
    finally:
        client.close()
        server.stop()

    ok = [o for o in outcomes if o.result is not None]
    errors = [o.error for o in outcomes if o.error is not None]
    consumed = [
        len(ok),
        sum(
            o.result.usage["input_tokens"] + o.result.usage["cache_creation_input_tokens"]
            for o in ok
        ),
        sum(o.result.usage["output_tokens"] for o in ok),
    ]
    per_second = [limit / 60 for limit in limits.as_tuple()]
    bursts = [limit * burst_s / 60 for limit in limits.as_tuple()]
    refill_needed = [
        max(used - burst, 0) / rate
        for used, burst, rate in zip(consumed, bursts, per_second, strict=True)
    ]
    binding_index = max(range(3), key=lambda i: (refill_needed[i], consumed[i] / bursts[i]))
    admitted = sorted(o.admitted_at for o in outcomes)
    window = admitted[-1] - admitted[0]
    allowed = bursts[binding_index] + per_second[binding_index] * window
    t_min = max(refill_needed[binding_index] + latency_s, math.ceil(calls / workers) * latency_s)
    makespan = finished - started
    http_429 = int(stats.get("by_status", {}).get("429", 0)) or sum(
        1 for e in errors if e.status == 429
    )
    result = {
        "calls": calls,
        "ok": len(ok),
        "errors": len(errors),
        "http_429": http_429,
        "binding": BUDGETS[binding_index],
        "utilization": round(consumed[binding_index] / allowed, 4) if allowed else 0,
        "makespan_s": round(makespan, 3),
        "t_min_s": round(t_min, 3),
        "makespan_ratio": round(makespan / t_min, 4) if t_min else None,
        "consumed": dict(zip(BUDGETS, consumed, strict=True)),
        "limits": {"rpm": limits.rpm, "itpm": limits.itpm, "otpm": limits.otpm},
        "burst_s": burst_s,
        "workers": workers,
        "latency_ms": options["latency_ms"],
        "limiter": backend,
        "server_requests": stats.get("requests", 0),
    }
    result["targets_met"] = (
        result["http_429"] == TARGETS["http_429"]
        and result["utilization"] >= TARGETS["utilization"]
        and (result["makespan_ratio"] or 0) <= TARGETS["makespan_ratio"]
    )
    log(f"done: {result}")
    return result
