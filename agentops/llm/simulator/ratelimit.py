"""Per-minute limits as continuously refilling token buckets, as Anthropic documents them.

Each limit (requests, input tokens, output tokens per minute) is a bucket holding at most
one minute's allowance that refills at limit/60 per second. A request needs 1 request,
its input tokens and its max_tokens (output is estimated from max_tokens up front and the
unused part is given back when the answer is known; cache reads do not count as input).
"""

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Generous defaults in the range of a high usage tier; 0 switches a limit off.
DEFAULT_RPM = 4_000
DEFAULT_ITPM = 2_000_000
DEFAULT_OTPM = 400_000


@dataclass(frozen=True)
class RateLimits:
    rpm: int = DEFAULT_RPM
    itpm: int = DEFAULT_ITPM
    otpm: int = DEFAULT_OTPM


class TokenBucket:
    def __init__(self, limit_per_minute: int, now: float):
        self.capacity = float(limit_per_minute)
        self.rate = limit_per_minute / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def needed(self, amount: float) -> float:
        # A request larger than the whole allowance goes through once the bucket is full.
        return min(float(amount), self.capacity)

    def seconds_until(self, amount: float) -> float:
        missing = self.needed(amount) - self.level
        return max(missing, 0.0) / self.rate

    def seconds_until_full(self) -> float:
        return max(self.capacity - self.level, 0.0) / self.rate


@dataclass
class Admission:
    allowed: bool
    headers: dict
    retry_after: int = 0
    limit_name: str = ""
    limit: int = 0


class RateLimiter:
    """Thread-safe buckets for one API key; `admit` before answering, `settle` after."""

    NAMES = (("requests", "rpm"), ("input-tokens", "itpm"), ("output-tokens", "otpm"))

    def __init__(self, limits: RateLimits | None = None, *, clock=time.monotonic):
        self.limits = limits or RateLimits()
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._buckets = {
            name: TokenBucket(getattr(self.limits, field), now)
            for name, field in self.NAMES
            if getattr(self.limits, field)
        }

    def _refill(self) -> None:
        now = self._clock()
        for bucket in self._buckets.values():
            bucket.refill(now)

    def _headers(self) -> dict:
        headers = {}
        wall = datetime.now(UTC)
        for name, bucket in self._buckets.items():
            reset = wall + timedelta(seconds=bucket.seconds_until_full())
            headers[f"anthropic-ratelimit-{name}-limit"] = str(int(bucket.capacity))
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(max(int(bucket.level), 0))
            headers[f"anthropic-ratelimit-{name}-reset"] = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
        tokens = [self._buckets[n] for n in ("input-tokens", "output-tokens") if n in self._buckets]
        if tokens:
            # The combined header reports whichever token limit is closest to running out.
            tightest = min(tokens, key=lambda b: b.level / b.capacity)
            name = (
                "input-tokens" if tightest is self._buckets.get("input-tokens") else "output-tokens"
            )
            for suffix in ("limit", "remaining", "reset"):
                headers[f"anthropic-ratelimit-tokens-{suffix}"] = headers[
                    f"anthropic-ratelimit-{name}-{suffix}"
                ]
        return headers

    def snapshot(self) -> dict:
        with self._lock:
            self._refill()
            return self._headers()

    def admit(self, *, input_tokens: int, max_tokens: int) -> Admission:
        wanted = {"requests": 1, "input-tokens": input_tokens, "output-tokens": max_tokens}
        with self._lock:
            self._refill()
            for name, bucket in self._buckets.items():
                wait = bucket.seconds_until(wanted[name])
                if wait > 0:
                    return Admission(
                        allowed=False,
                        headers=self._headers(),
                        retry_after=max(math.ceil(wait), 1),
                        limit_name=name,
                        limit=int(bucket.capacity),
                    )
            for name, bucket in self._buckets.items():
                bucket.level -= bucket.needed(wanted[name])
            return Admission(allowed=True, headers=self._headers())

    def settle(self, *, max_tokens: int, output_tokens: int, cache_read_tokens: int) -> dict:
        """Give back unused output and cached input; return the headers for the answer."""
        with self._lock:
            self._refill()
            refunds = {
                "output-tokens": max(max_tokens - output_tokens, 0),
                "input-tokens": max(cache_read_tokens, 0),
            }
            for name, amount in refunds.items():
                bucket = self._buckets.get(name)
                if bucket:
                    bucket.level = min(bucket.capacity, bucket.level + amount)
            return self._headers()
