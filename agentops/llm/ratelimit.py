"""The rate limiter every model call passes: three GCRA buckets per API key and model.

Budgets are requests, input tokens and output tokens per minute. Each budget is a generic
cell rate algorithm (GCRA) bucket: one number, the theoretical arrival time (TAT). A budget of
L per minute costs T = 60/L seconds per unit, and the bucket may run `burst_s` seconds ahead
of the clock (tau), i.e. hold L * burst_s / 60 units.

A call asks for all three budgets at once (1 request, its input estimate, its max_tokens).
Instead of "yes or retry later", the limiter hands out a *slot*: the earliest time at which
all three buckets conform, never earlier than the slot given to the call before it. The
call sleeps until its slot. Slots are therefore handed out in arrival order (FIFO), waiting
callers never poll, a big call cannot be starved by small ones, and concurrent runs share
the budget in the order they asked. A call whose slot lies further away than its maximum
wait is refused without reserving anything (RateBudgetExhausted).

After the call, `settle` refunds what was reserved but not used (the estimate minus the real
input, max_tokens minus the real output), and reconciles with the server's
anthropic-ratelimit-*-remaining headers: if the server says less is left than we think, our
TAT moves forward. A 429's retry-after holds every new slot back until it has passed.

With Redis (settings.REDIS_URL), one Lua script updates the buckets atomically, using the
Redis clock, so every worker on every machine shares them. The in-process LocalLimiter (same
arithmetic under a lock) is only for the embedded default, which runs one worker process.
"""

import json
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings

from .types import RateBudgetExhausted

BUDGETS = ("requests", "input_tokens", "output_tokens")
BUDGET_LABELS = {
    "requests": "requests per minute",
    "input_tokens": "input tokens per minute",
    "output_tokens": "output tokens per minute",
}
# Anthropic's response headers for each budget.
HEADER_PREFIX = {
    "requests": "anthropic-ratelimit-requests",
    "input_tokens": "anthropic-ratelimit-input-tokens",
    "output_tokens": "anthropic-ratelimit-output-tokens",
}
KEY_PREFIX = "agentops:rl:"
_US = 1_000_000


@dataclass(frozen=True)
class Limits:
    rpm: int
    itpm: int
    otpm: int

    def as_tuple(self):
        return (self.rpm, self.itpm, self.otpm)


@dataclass
class Reservation:
    bucket: str
    limits: Limits
    costs: tuple[int, int, int]
    wait_s: float
    slot_at: float  # when the call may be sent, in seconds on the limiter's clock
    settled: bool = field(default=False)


def bucket_name(fingerprint, model):
    return f"{fingerprint}:{model}"


def _exhausted(budget_index, wait_s, max_wait_s, costs, limits):
    if budget_index == 4:
        return RateBudgetExhausted(
            f"rate budget exhausted: the API asked us to pause (retry-after) for "
            f"{wait_s:.0f}s, longer than the {max_wait_s:.0f}s a call may wait",
            budget="retry_after",
            wait_s=wait_s,
        )
    budget = BUDGETS[budget_index - 1]
    limit = limits.as_tuple()[budget_index - 1]
    if wait_s < 0:
        return RateBudgetExhausted(
            f"rate budget exhausted: this call needs {costs[budget_index - 1]} "
            f"{budget.replace('_', ' ')} but the budget is {limit} {BUDGET_LABELS[budget]}",
            budget=budget,
        )
    return RateBudgetExhausted(
        f"rate budget exhausted: {BUDGET_LABELS[budget]} ({limit}) would need a wait of "
        f"{wait_s:.1f}s, longer than the {max_wait_s:.0f}s a call may wait",
        budget=budget,
        wait_s=wait_s,
    )


def server_remaining(headers):
    """The anthropic-ratelimit-*-remaining values, -1 where a header is absent."""
    values = []
    for budget in BUDGETS:
        raw = (headers or {}).get(f"{HEADER_PREFIX[budget]}-remaining")
        try:
            values.append(max(int(float(raw)), 0) if raw not in (None, "") else -1)
        except ValueError:
            values.append(-1)
    return values


class Limiter:
    burst_s: float

    def reserve(self, *, bucket, limits, input_tokens, output_tokens, max_wait_s):
        """Reserve budget for one call or raise RateBudgetExhausted. Does not sleep."""
        costs = (1, max(int(input_tokens), 0), max(int(output_tokens), 0))
        status, wait_us, binding, slot_us = self._reserve(bucket, limits, costs, max_wait_s)
        wait_s = wait_us / _US
        if status != 1:
            raise _exhausted(binding, -1 if status == -1 else wait_s, max_wait_s, costs, limits)
        return Reservation(
            bucket=bucket,
            limits=limits,
            costs=costs,
            wait_s=wait_s,
            slot_at=slot_us / _US,
        )

    def settle(
        self, reservation, *, input_tokens=None, output_tokens=None, headers=None, hold_s=0.0
    ):
        """Give back what the call did not use and reconcile with the server's headers.

        `input_tokens`/`output_tokens` are the real counts (None keeps the reservation);
        `hold_s` pauses every new slot, e.g. for a 429's retry-after.
        """
        if reservation.settled:
            return
        reservation.settled = True
        real_in = reservation.costs[1] if input_tokens is None else int(input_tokens)
        real_out = reservation.costs[2] if output_tokens is None else int(output_tokens)
        deltas = (0, reservation.costs[1] - real_in, reservation.costs[2] - real_out)
        snapshot = {
            k: v for k, v in (headers or {}).items() if k.startswith("anthropic-ratelimit-")
        }
        self._settle(
            reservation.bucket,
            reservation.limits,
            deltas,
            server_remaining(headers),
            max(float(hold_s or 0), 0.0),
            json.dumps(snapshot, sort_keys=True) if snapshot else "",
        )

    def state(self, *, bucket, limits):
        """What is left in each bucket now, how long the queue is, and the server's view."""
        now_us, tats, last_us, hold_us, snapshot = self._state(bucket)
        tau = self.burst_s * _US
        result = {"budgets": [], "queue_s": max(last_us - now_us, 0) / _US}
        for name, limit, tat in zip(BUDGETS, limits.as_tuple(), tats, strict=True):
            per_unit = 60 * _US / limit
            capacity = limit * self.burst_s / 60
            available = (now_us + tau - max(tat if tat is not None else now_us, now_us)) / per_unit
            result["budgets"].append(
                {
                    "name": name,
                    "label": BUDGET_LABELS[name],
                    "limit": limit,
                    "capacity": int(capacity),
                    "available": max(int(available), 0),
                    "fraction": max(min(available / capacity, 1.0), 0.0) if capacity else 0.0,
                }
            )
        result["hold_s"] = max(hold_us - now_us, 0) / _US
        result["server"] = json.loads(snapshot) if snapshot else {}
        return result


# --- in-process -------------------------------------------------------------------------


class LocalLimiter(Limiter):
    """The same arithmetic as the Lua script, under a lock, for one process only."""

    def __init__(self, *, burst_s=None, clock=time.time):
        self.burst_s = float(burst_s or settings.AGENTOPS_RATE_BURST_S)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets = {}

    def _now_us(self):
        return int(self._clock() * _US)

    def _reserve(self, bucket, limits, costs, max_wait_s):
        with self._lock:
            now = self._now_us()
            state = self._buckets.setdefault(bucket, {"tat": [None] * 3, "last": 0, "hold": 0})
            tau = self.burst_s * _US
            slot = max(now, state["last"], state["hold"])
            binding = 4 if state["hold"] > now and state["hold"] >= state["last"] else 0
            per_units = []
            for index, (limit, cost) in enumerate(zip(limits.as_tuple(), costs, strict=True)):
                if cost > limit:
                    return -1, 0, index + 1, 0
                per_unit = 60 * _US / limit
                per_units.append(per_unit)
                tat = max(state["tat"][index] or now, now)
                conforms_at = tat + cost * per_unit - tau
                if conforms_at > slot:
                    slot, binding = conforms_at, index + 1
            wait = slot - now
            if wait > max_wait_s * _US:
                return 0, wait, binding or 1, 0
            for index, cost in enumerate(costs):
                tat = max(state["tat"][index] or now, now)
                state["tat"][index] = max(tat, slot) + cost * per_units[index]
            state["last"] = slot
            return 1, wait, binding, slot

    def _settle(self, bucket, limits, deltas, remaining, hold_s, snapshot):
        with self._lock:
            now = self._now_us()
            state = self._buckets.setdefault(bucket, {"tat": [None] * 3, "last": 0, "hold": 0})
            tau = self.burst_s * _US
            for index, limit in enumerate(limits.as_tuple()):
                per_unit = 60 * _US / limit
                tat = max(state["tat"][index] or now, now) - deltas[index] * per_unit
                if remaining[index] >= 0 and (now + tau - tat) / per_unit > remaining[index]:
                    tat = now + tau - remaining[index] * per_unit
                state["tat"][index] = max(tat, now)
            if hold_s > 0:
                state["hold"] = max(state["hold"], now + int(hold_s * _US))
            if snapshot:
                state["server"] = snapshot

    def _state(self, bucket):
        with self._lock:
            now = self._now_us()
            state = self._buckets.get(bucket) or {"tat": [None] * 3, "last": 0, "hold": 0}
            return now, list(state["tat"]), state["last"], state["hold"], state.get("server", "")


# --- Redis ------------------------------------------------------------------------------

# One script for every change to a bucket, so reserve, refund, reconcile and hold are each
# atomic and see the same clock (the Redis server's). Times are integer microseconds.
LUA = """
local key = KEYS[1]
local op = ARGV[1]
local burst_us = tonumber(ARGV[2]) * 1000000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local names = {'r', 'i', 'o'}
local function tat_of(index)
  local v = tonumber(redis.call('HGET', key, names[index]))
  if v == nil or v < now then return now end
  return v
end
local function expire(latest)
  local ttl = math.floor((latest - now) / 1000) + 120000
  if ttl < 120000 then ttl = 120000 end
  redis.call('PEXPIRE', key, ttl)
end

if op == 'reserve' then
  local max_wait = tonumber(ARGV[3]) * 1000000
  local last = tonumber(redis.call('HGET', key, 'last') or '0')
  local hold = tonumber(redis.call('HGET', key, 'hold') or '0')
  local slot = math.max(now, last, hold)
  local binding = 0
  if hold > now and hold >= last then binding = 4 end
  local per = {}
  local cost = {}
  for index = 1, 3 do
    local limit = tonumber(ARGV[2 + index * 2])
    cost[index] = tonumber(ARGV[3 + index * 2])
    if cost[index] > limit then return {-1, 0, index} end
    per[index] = 60000000 / limit
    local conforms = tat_of(index) + cost[index] * per[index] - burst_us
    if conforms > slot then slot = conforms; binding = index end
  end
  local wait = slot - now
  if wait > max_wait then
    if binding == 0 then binding = 1 end
    return {0, math.floor(wait), binding}
  end
  local latest = slot
  for index = 1, 3 do
    local tat = math.max(tat_of(index), slot) + cost[index] * per[index]
    redis.call('HSET', key, names[index], string.format('%.0f', tat))
    if tat > latest then latest = tat end
  end
  redis.call('HSET', key, 'last', string.format('%.0f', slot))
  expire(latest)
  return {1, math.floor(wait), binding, string.format('%.0f', slot)}
end

if op == 'settle' then
  local latest = now
  for index = 1, 3 do
    local limit = tonumber(ARGV[index * 3])
    local delta = tonumber(ARGV[index * 3 + 1])
    local remaining = tonumber(ARGV[index * 3 + 2])
    local per = 60000000 / limit
    local tat = tat_of(index) - delta * per
    if remaining >= 0 and (now + burst_us - tat) / per > remaining then
      tat = now + burst_us - remaining * per
    end
    if tat < now then tat = now end
    redis.call('HSET', key, names[index], string.format('%.0f', tat))
    if tat > latest then latest = tat end
  end
  local hold_s = tonumber(ARGV[12])
  if hold_s > 0 then
    local hold = math.max(tonumber(redis.call('HGET', key, 'hold') or '0'), now + hold_s * 1000000)
    redis.call('HSET', key, 'hold', string.format('%.0f', hold))
    if hold > latest then latest = hold end
  end
  if ARGV[13] ~= '' then redis.call('HSET', key, 'srv', ARGV[13]) end
  expire(latest)
  return {1}
end

if op == 'state' then
  local v = redis.call('HMGET', key, 'r', 'i', 'o', 'last', 'hold', 'srv')
  return {string.format('%.0f', now), v[1] or '', v[2] or '', v[3] or '',
          v[4] or '0', v[5] or '0', v[6] or ''}
end
return redis.error_reply('unknown op')
"""


class RedisLimiter(Limiter):
    def __init__(self, client, *, burst_s=None):
        self.burst_s = float(burst_s or settings.AGENTOPS_RATE_BURST_S)
        self._client = client
        self._script = client.register_script(LUA)

    def _key(self, bucket):
        return KEY_PREFIX + bucket

    def _reserve(self, bucket, limits, costs, max_wait_s):
        args = ["reserve", self.burst_s, max(float(max_wait_s), 0.0)]
        for limit, cost in zip(limits.as_tuple(), costs, strict=True):
            args += [limit, cost]
        reply = self._script(keys=[self._key(bucket)], args=args)
        slot = int(reply[3]) if len(reply) > 3 else 0
        return int(reply[0]), int(reply[1]), int(reply[2]), slot

    def _settle(self, bucket, limits, deltas, remaining, hold_s, snapshot):
        args = ["settle", self.burst_s]
        for limit, delta, left in zip(limits.as_tuple(), deltas, remaining, strict=True):
            args += [limit, delta, left]
        args += [hold_s, snapshot]
        self._script(keys=[self._key(bucket)], args=args)

    def _state(self, bucket):
        raw = self._script(keys=[self._key(bucket)], args=["state", self.burst_s])
        values = [v.decode() if isinstance(v, bytes) else v for v in raw]
        now = int(values[0])
        tats = [int(v) if v else None for v in values[1:4]]
        return now, tats, int(values[4] or 0), int(values[5] or 0), values[6]


_limiter = None
_limiter_lock = threading.Lock()


def redis_client():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


def get_limiter():
    """The process-wide limiter: Redis when REDIS_URL is set, in-process otherwise."""
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            _limiter = RedisLimiter(redis_client()) if settings.REDIS_URL else LocalLimiter()
        return _limiter


def reset_all():
    """Forget every bucket (tests; after changing the burst). Live callers start afresh."""
    global _limiter
    with _limiter_lock:
        if settings.REDIS_URL:
            client = redis_client()
            keys = list(client.scan_iter(KEY_PREFIX + "*"))
            if keys:
                client.delete(*keys)
        _limiter = None
