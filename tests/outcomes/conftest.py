"""The run engine's fixtures (agents, the in-process simulator, the bounded drain, a private
Celery queue) for the outcome loop's engine tests."""

from tests.runs.conftest import (  # noqa: F401
    _generous_rate_limits,
    drain,
    make_agent,
    private_queue,
)
