"""The rate limiter every model call passes: three GCRA buckets per API key and model.

Budgets are requests, input tokens and output tokens per minute. Each budget is a generic
cell rate algorithm (GCRA) bucket: one number, the theoretical arrival time (TAT). A budget of
L per minute costs T = 60/L seconds per unit, and the bucket may run `burst_s` seconds ahead
of the clock (tau), i.e. hold L * burst_s / 60 units.

A call asks for all three budgets at once (1 request, its input estimate, its max_tokens).
Instead of "yes or retry later", the limiter hands out a *slot*: the earliest time at which
all three buckets conform, never earlier than the slot given to the call before it. Slots
are therefore handed out in arrival order (FIFO): a big call cannot be starved by small ones
and concurrent runs share the budget in the order they asked. A call whose slot lies further
away than its maximum wait is refused without reserving anything (RateBudgetExhausted).

The call sleeps until its slot and then *claims* it: only then does it count as sent. Until
then its booking waits in a queue kept apart from the bucket the API sees. After the call,
`settle` refunds what was reserved but not used (the estimate minus the real input,
max_tokens minus the real output) and reconciles with the server's
anthropic-ratelimit-*-remaining headers (if the server, which counted when the call reached
it, had less left than our bucket held when we sent it, the bucket moves forward); both are
capped as the API caps its bucket, and the waiting bookings are then given the slots they
would get now (earlier after a refund, later after a pessimistic header). A sleeping caller
looks its booking up every POLL_S seconds to notice a move. A 429's retry-after holds every
waiting and new slot back until it has passed.

With Redis (settings.REDIS_URL), one Lua script updates the buckets atomically, using the
Redis clock, so every worker on every machine shares them. The in-process LocalLimiter (same
arithmetic under a lock) is only for the embedded default, which runs one worker process.
"""

import itertools
import json
import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings

from .types import RateBudgetExhausted

log = logging.getLogger(__name__)

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
POLL_S = 0.1  # how often a waiting call looks whether its slot moved
# A booking not claimed this long after its slot belongs to a caller that died; it is then
# counted at its slot and forgotten.
ABANDONED_AFTER_S = 10
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
    ticket: str = ""  # names the booking while it waits (its slot may move, see `wait`)
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
        status, wait_us, binding, slot_us, ticket = self._reserve(bucket, limits, costs, max_wait_s)
        wait_s = wait_us / _US
        if status != 1:
            raise _exhausted(binding, -1 if status == -1 else wait_s, max_wait_s, costs, limits)
        return Reservation(
            bucket=bucket,
            limits=limits,
            costs=costs,
            wait_s=wait_s,
            slot_at=slot_us / _US,
            ticket=ticket,
        )

    def wait(self, reservation, *, sleep=time.sleep, poll_s=POLL_S):
        """Sleep until the reservation's slot, then claim it (the call is being sent now).

        While waiting, a refund or a server header may move the slot earlier or later, so
        the booking is looked up again at least every `poll_s` seconds.
        """
        if not reservation.ticket:  # admitted at once, already counted as sent
            return
        slot_us = reservation.slot_at * _US
        now_us = slot_us - reservation.wait_s * _US
        while True:
            if slot_us > now_us:
                sleep(min((slot_us - now_us) / _US, poll_s))
            now_us, found = self._claim(reservation.bucket, reservation.ticket)
            if found < 0:
                reservation.slot_at = now_us / _US
                return
            slot_us = found

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
            # When the call counted as sent: about when the server counted what remains.
            int(reservation.slot_at * _US),
        )

    def _set_burst(self, burst_s, margin_s):
        """`burst_s`: how far the API's buckets run ahead of the clock. Ours admit
        `margin_s` less (never under half of it): see settings.AGENTOPS_RATE_SEND_MARGIN_MS."""
        api_burst_s = float(burst_s or settings.AGENTOPS_RATE_BURST_S)
        self.margin_s = min(float(margin_s), api_burst_s / 2)
        self.burst_s = api_burst_s - self.margin_s

    def state(self, *, bucket, limits):
        """What is left in each bucket now, how long the queue is, and the server's view
        (as the API counts: the send margin is shown as available)."""
        now_us, tats, last_us, hold_us, snapshot = self._state(bucket)
        tau = (self.burst_s + self.margin_s) * _US
        result = {"budgets": [], "queue_s": max(last_us - now_us, 0) / _US}
        for name, limit, tat in zip(BUDGETS, limits.as_tuple(), tats, strict=True):
            per_unit = 60 * _US / limit
            capacity = limit * (self.burst_s + self.margin_s) / 60
            available = (now_us + tau - max(tat, now_us)) / per_unit
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

    def __init__(self, *, burst_s=None, margin_s=0.0, clock=time.time):
        self._set_burst(burst_s, margin_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets = {}
        self._tickets = itertools.count(1)

    def _now_us(self):
        return int(self._clock() * _US)

    def _bucket(self, bucket, now):
        state = self._buckets.setdefault(
            bucket, {"base": [0, 0, 0], "queue": [], "last": 0, "hold": 0, "server": ""}
        )
        while state["queue"] and state["queue"][0][0] <= now - ABANDONED_AFTER_S * _US:
            slot, spans, _ticket = state["queue"].pop(0)
            self._count(state, spans, slot)
        return state

    @staticmethod
    def _count(state, spans, at):
        state["base"] = [
            max(tat, at) + span for tat, span in zip(state["base"], spans, strict=True)
        ]

    @staticmethod
    def _tats(state, now):
        tats = []
        for index in range(3):
            tat = max(state["base"][index], now)
            for slot, spans, _ticket in state["queue"]:
                tat = max(tat, slot) + spans[index]
            tats.append(tat)
        return tats

    def _reslot(self, state, now):
        tats = [max(base, now) for base in state["base"]]
        previous = max(now, state["hold"])
        for entry in state["queue"]:
            slot = previous
            for index in range(3):
                slot = max(slot, tats[index] + entry[1][index] - self.burst_s * _US)
            for index in range(3):
                tats[index] = max(tats[index], slot) + entry[1][index]
            entry[0] = previous = slot
        if state["queue"]:
            state["last"] = previous

    def _reserve(self, bucket, limits, costs, max_wait_s):
        with self._lock:
            now = self._now_us()
            state = self._bucket(bucket, now)
            tau = self.burst_s * _US
            slot = max(now, state["last"], state["hold"])
            binding = 4 if state["hold"] > now and state["hold"] >= state["last"] else 0
            spans = []
            for index, (limit, cost, tat) in enumerate(
                zip(limits.as_tuple(), costs, self._tats(state, now), strict=True)
            ):
                if cost > limit:
                    return -1, 0, index + 1, 0, ""
                spans.append(cost * 60 * _US / limit)
                conforms_at = tat + spans[index] - tau
                if conforms_at > slot:
                    slot, binding = conforms_at, index + 1
            wait = slot - now
            if wait > max_wait_s * _US:
                return 0, wait, binding or 1, 0, ""
            state["last"] = slot
            if wait <= 0:
                self._count(state, spans, now)
                return 1, 0, binding, slot, ""
            ticket = f"{next(self._tickets):012d}"
            state["queue"].append([slot, spans, ticket])
            return 1, wait, binding, slot, ticket

    def _claim(self, bucket, ticket):
        with self._lock:
            now = self._now_us()
            state = self._bucket(bucket, now)
            for position, (slot, spans, entry_ticket) in enumerate(state["queue"]):
                if entry_ticket == ticket:
                    if slot > now:
                        return now, slot
                    del state["queue"][position]
                    self._count(state, spans, now)
                    break
            return now, -1

    def _settle(self, bucket, limits, deltas, remaining, hold_s, snapshot, counted_us):
        with self._lock:
            now = self._now_us()
            state = self._bucket(bucket, now)
            tau = self.burst_s * _US
            counted = min(counted_us, now)  # as in the Lua script
            for index, limit in enumerate(limits.as_tuple()):
                per_unit = 60 * _US / limit
                base = max(state["base"][index], now) - deltas[index] * per_unit
                if remaining[index] >= 0 and (counted + tau - base) / per_unit > remaining[index]:
                    base = counted + tau - remaining[index] * per_unit
                state["base"][index] = max(base, now)
            if hold_s > 0:
                state["hold"] = max(state["hold"], now + int(hold_s * _US))
            if snapshot:
                state["server"] = snapshot
            self._reslot(state, now)

    def _state(self, bucket):
        with self._lock:
            now = self._now_us()
            state = self._bucket(bucket, now)
            return now, self._tats(state, now), state["last"], state["hold"], state["server"]


# --- Redis ------------------------------------------------------------------------------

# One script for every change to a bucket, so reserve, settle and state are each atomic and
# see the same clock (the Redis server's). Times are integer microseconds.
#
# Each budget is kept in two parts. `base` is the TAT of the bucket as the API sees it: the
# calls that were sent. `queue` (a sorted set scored by slot) holds the bookings of calls
# still waiting, each as (ticket, time span per budget). The full TAT is the base with the
# queue replayed on top (max(tat, slot) + span, in slot order); a booking joins the base
# when its caller claims it (at the claim's time). Refunds and server headers change only the
# base, capped as the API's bucket is (it never holds more than its burst), and then the
# queue is re-slotted: a refund cannot be spent twice by hiding behind bookings the API has
# not seen yet.
LUA = """
local key = KEYS[1]
local qkey = KEYS[2]
local op = ARGV[1]
local burst_us = tonumber(ARGV[2]) * 1000000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local names = {'r', 'i', 'o'}
local base = {}
for index = 1, 3 do
  base[index] = tonumber(redis.call('HGET', key, names[index]) or '0')
end
local function parse(member, score)
  local parts = {tonumber(score)}
  for part in string.gmatch(member, '[^|]+') do parts[#parts + 1] = tonumber(part) end
  return parts  -- slot, ticket, span r, span i, span o
end
-- Bookings long past their slot belong to callers that died: count them and forget them.
local abandoned = now - tonumber(ARGV[3]) * 1000000
local due = redis.call('ZRANGEBYSCORE', qkey, '-inf', abandoned, 'WITHSCORES')
for i = 1, #due, 2 do
  local b = parse(due[i], due[i + 1])
  for index = 1, 3 do base[index] = math.max(base[index], b[1]) + b[index + 2] end
end
if #due > 0 then
  redis.call('ZREMRANGEBYSCORE', qkey, '-inf', abandoned)
  for index = 1, 3 do
    redis.call('HSET', key, names[index], string.format('%.0f', base[index]))
  end
end
local queue = {}
local members = redis.call('ZRANGE', qkey, 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local b = parse(members[i], members[i + 1])
  b.member = members[i]
  queue[#queue + 1] = b
end
local function tat_of(index)
  local tat = math.max(base[index], now)
  for _, b in ipairs(queue) do tat = math.max(tat, b[1]) + b[index + 2] end
  return tat
end
local function save(latest)
  for index = 1, 3 do
    redis.call('HSET', key, names[index], string.format('%.0f', base[index]))
  end
  local ttl = math.floor((latest - now) / 1000) + 120000
  if ttl < 120000 then ttl = 120000 end
  redis.call('PEXPIRE', key, ttl)
  redis.call('PEXPIRE', qkey, ttl)
end

if op == 'reserve' then
  local max_wait = tonumber(ARGV[4]) * 1000000
  local last = tonumber(redis.call('HGET', key, 'last') or '0')
  local hold = tonumber(redis.call('HGET', key, 'hold') or '0')
  local slot = math.max(now, last, hold)
  local binding = 0
  if hold > now and hold >= last then binding = 4 end
  local span = {}
  local latest = slot
  for index = 1, 3 do
    local limit = tonumber(ARGV[3 + index * 2])
    local cost = tonumber(ARGV[4 + index * 2])
    if cost > limit then return {-1, 0, index, '0', ''} end
    span[index] = cost * 60000000 / limit
    local tat = tat_of(index)
    local conforms = tat + span[index] - burst_us
    if conforms > slot then slot = conforms; binding = index end
    if tat + span[index] > latest then latest = tat + span[index] end
  end
  local wait = slot - now
  if wait > max_wait then
    if binding == 0 then binding = 1 end
    return {0, math.floor(wait), binding, '0', ''}
  end
  redis.call('HSET', key, 'last', string.format('%.0f', slot))
  if wait <= 0 then
    -- Admitted at once: the call is sent now, so it is in the bucket now.
    for index = 1, 3 do base[index] = math.max(base[index], now) + span[index] end
    save(latest)
    return {1, 0, binding, string.format('%.0f', slot), ''}
  end
  local ticket = string.format('%012d', redis.call('HINCRBY', key, 'n', 1))
  local member = string.format('%s|%.3f|%.3f|%.3f', ticket, span[1], span[2], span[3])
  redis.call('ZADD', qkey, string.format('%.0f', slot), member)
  save(latest + (slot - now))
  return {1, math.floor(wait), binding, string.format('%.0f', slot), ticket}
end

if op == 'claim' then
  -- The caller woke up: if its slot has come, its call is sent now and counts from now.
  for _, b in ipairs(queue) do
    if string.sub(b.member, 1, 12) == ARGV[4] then
      if b[1] > now then
        return {string.format('%.0f', now), string.format('%.0f', b[1])}
      end
      redis.call('ZREM', qkey, b.member)
      for index = 1, 3 do base[index] = math.max(base[index], now) + b[index + 2] end
      save(now)
      break
    end
  end
  return {string.format('%.0f', now), '-1'}
end

if op == 'settle' then
  local latest = now
  -- The server counted its remaining budget when the call reached it, not now: compare
  -- with what our bucket held then (it has refilled since, as the server's has).
  local counted = math.min(tonumber(ARGV[15]), now)
  for index = 1, 3 do
    local limit = tonumber(ARGV[index * 3 + 1])
    local delta = tonumber(ARGV[index * 3 + 2])
    local remaining = tonumber(ARGV[index * 3 + 3])
    local per = 60000000 / limit
    local b = math.max(base[index], now) - delta * per
    if remaining >= 0 and (counted + burst_us - b) / per > remaining then
      b = counted + burst_us - remaining * per
    end
    if b < now then b = now end
    base[index] = b
    if tat_of(index) > latest then latest = tat_of(index) end
  end
  local hold_s = tonumber(ARGV[13])
  if hold_s > 0 then
    local hold = math.max(tonumber(redis.call('HGET', key, 'hold') or '0'), now + hold_s * 1000000)
    redis.call('HSET', key, 'hold', string.format('%.0f', hold))
    if hold > latest then latest = hold end
  end
  if ARGV[14] ~= '' then redis.call('HSET', key, 'srv', ARGV[14]) end
  -- Waiting bookings move to the slots they would get now, in the same order: earlier
  -- after a refund, later when the server said less is left or asked us to pause.
  if #queue > 0 then
    local tats = {}
    for index = 1, 3 do tats[index] = math.max(base[index], now) end
    local previous = math.max(now, tonumber(redis.call('HGET', key, 'hold') or '0'))
    for _, b in ipairs(queue) do
      local slot = previous
      for index = 1, 3 do slot = math.max(slot, tats[index] + b[index + 2] - burst_us) end
      for index = 1, 3 do tats[index] = math.max(tats[index], slot) + b[index + 2] end
      redis.call('ZADD', qkey, string.format('%.0f', slot), b.member)
      b[1] = slot
      previous = slot
    end
    redis.call('HSET', key, 'last', string.format('%.0f', previous))
    for index = 1, 3 do if tats[index] > latest then latest = tats[index] end end
  end
  save(latest)
  return {1}
end

if op == 'state' then
  local v = redis.call('HMGET', key, 'last', 'hold', 'srv')
  return {string.format('%.0f', now), string.format('%.0f', tat_of(1)),
          string.format('%.0f', tat_of(2)), string.format('%.0f', tat_of(3)),
          v[1] or '0', v[2] or '0', v[3] or ''}
end
return redis.error_reply('unknown op')
"""


class RedisLimiter(Limiter):
    def __init__(self, client, *, burst_s=None, margin_s=0.0):
        self._set_burst(burst_s, margin_s)
        self._client = client
        self._script = client.register_script(LUA)

    def _keys(self, bucket):
        return [KEY_PREFIX + bucket, KEY_PREFIX + bucket + ":queue"]

    def _reserve(self, bucket, limits, costs, max_wait_s):
        args = ["reserve", self.burst_s, ABANDONED_AFTER_S, max(float(max_wait_s), 0.0)]
        for limit, cost in zip(limits.as_tuple(), costs, strict=True):
            args += [limit, cost]
        reply = self._script(keys=self._keys(bucket), args=args)
        ticket = reply[4].decode() if isinstance(reply[4], bytes) else reply[4]
        return int(reply[0]), int(reply[1]), int(reply[2]), int(reply[3]), ticket

    def _claim(self, bucket, ticket):
        args = ["claim", self.burst_s, ABANDONED_AFTER_S, ticket]
        reply = self._script(keys=self._keys(bucket), args=args)
        return int(reply[0]), int(reply[1])

    def _settle(self, bucket, limits, deltas, remaining, hold_s, snapshot, counted_us):
        import redis

        args = ["settle", self.burst_s, ABANDONED_AFTER_S]
        for limit, delta, left in zip(limits.as_tuple(), deltas, remaining, strict=True):
            args += [limit, delta, left]
        args += [hold_s, snapshot, counted_us]
        try:
            self._script(keys=self._keys(bucket), args=args)
        except redis.exceptions.RedisError as error:
            # The call has been answered (and paid for): losing its answer over a refund
            # would make the engine call the model again. Unsettled, the bucket keeps the
            # whole reservation until it refills, which errs on the side of sending less.
            log.warning("Could not settle a rate-limit reservation on %s: %s", bucket, error)

    def _state(self, bucket):
        raw = self._script(keys=self._keys(bucket), args=["state", self.burst_s, ABANDONED_AFTER_S])
        values = [v.decode() if isinstance(v, bytes) else v for v in raw]
        now = int(values[0])
        tats = [int(v) for v in values[1:4]]
        return now, tats, int(values[4] or 0), int(values[5] or 0), values[6]


_limiter = None
_limiter_lock = threading.Lock()


def redis_client():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


def send_margin_s():
    return settings.AGENTOPS_RATE_SEND_MARGIN_MS / 1000


def get_limiter():
    """The process-wide limiter: Redis when REDIS_URL is set, in-process otherwise."""
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            _limiter = (
                RedisLimiter(redis_client(), margin_s=send_margin_s())
                if settings.REDIS_URL
                else LocalLimiter(margin_s=send_margin_s())
            )
        return _limiter


def reset_all(*, keep=("bench-",)):
    """Forget every bucket but those named `keep*` (tests; after changing the burst)."""
    global _limiter
    with _limiter_lock:
        if settings.REDIS_URL:
            client = redis_client()
            kept = tuple((KEY_PREFIX + prefix).encode() for prefix in keep)
            keys = [k for k in client.scan_iter(KEY_PREFIX + "*") if not k.startswith(kept)]
            if keys:
                client.delete(*keys)
        _limiter = None
