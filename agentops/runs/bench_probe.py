"""Loaded only into the overhead benchmark's worker (`celery worker --include`): records,
for each step the worker executes, when it began claiming it and when it was done with it.

The engine is done with a step once its checkpoint committed and the next step was sent to
the broker or kept for this worker to claim next (see services.step_execute; both happen on
commit), so began -> done is the step's wall time as the benchmark defines it: claim, model
call, checkpoint and enqueue. One task may execute several steps (the kept ones), so the
probe times each step's execution, not the task (a kept step's claim, which travels with
the previous step's commit, counts in that step's time). The records go to a Redis list
named by AGENTOPS_BENCH_PROBE_KEY, which the benchmark reads.
"""

import functools
import json
import os
import time

from django.conf import settings

from agentops.llm.ratelimit import redis_client

from . import services

PROBE_KEY = os.environ.get("AGENTOPS_BENCH_PROBE_KEY", "")
_redis = []


def _timed(claim_and_execute):
    @functools.wraps(claim_and_execute)
    def timed(step_id, *claimed):
        started = time.time()
        try:
            return claim_and_execute(step_id, *claimed)
        finally:
            returned = time.time()
            # Sent after the step's own timing ends.
            _record({"step": step_id, "started": started, "returned": returned})

    return timed


def _record(record):
    if not settings.REDIS_URL:
        return
    if not _redis:
        _redis.append(redis_client())
    _redis[0].rpush(PROBE_KEY, json.dumps(record))


if PROBE_KEY:
    services._claim_and_execute = _timed(services._claim_and_execute)
