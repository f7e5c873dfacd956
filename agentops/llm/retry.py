"""The one retry policy for model calls: honour the server's retry-after, otherwise back off
exponentially with full jitter, and never wait longer than the cap."""

import random

from django.conf import settings

BASE_DELAY_S = 1.0


def retry_delay(*, attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry)."""
    cap = float(settings.AGENTOPS_RETRY_MAX_DELAY_S)
    if retry_after is not None and retry_after >= 0:
        return min(float(retry_after), cap)
    ceiling = min(cap, BASE_DELAY_S * (2 ** max(attempt - 1, 0)))
    # Full jitter: concurrent callers that failed together do not come back together.
    return random.uniform(ceiling / 2, ceiling)
