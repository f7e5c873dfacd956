"""Loaded only into the overhead benchmark's worker (`celery worker --include`): records,
for each step task, when the worker started it and when it returned.

A step task returns after its checkpoint committed and the next step was sent to the broker
(the engine sends it on commit), so started -> returned is the step's wall time as the
benchmark defines it: claim, model call, checkpoint and enqueue. The records go to a Redis
list named by AGENTOPS_BENCH_PROBE_KEY, which the benchmark reads.
"""

import json
import os
import threading
import time

from celery.signals import task_postrun, task_prerun
from django.conf import settings

from agentops.llm.ratelimit import redis_client

STEP_TASK = "agentops.runs.step_execute"
PROBE_KEY = os.environ.get("AGENTOPS_BENCH_PROBE_KEY", "")
_started = {}
_lock = threading.Lock()
_redis = []


@task_prerun.connect
def _step_started(task_id=None, task=None, **kwargs):
    if PROBE_KEY and task is not None and task.name == STEP_TASK:
        with _lock:
            _started[task_id] = time.time()


@task_postrun.connect
def _step_returned(task_id=None, task=None, args=None, **kwargs):
    returned = time.time()
    with _lock:
        started = _started.pop(task_id, None)
    if started is None or not settings.REDIS_URL:
        return
    record = {"step": (args or [None])[0], "started": started, "returned": returned}
    if not _redis:
        _redis.append(redis_client())
    _redis[0].rpush(PROBE_KEY, json.dumps(record))
