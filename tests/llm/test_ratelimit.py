"""The GCRA limiter, on real Redis and in process: budgets hold under concurrency."""

import random
import threading
import time
import uuid

import pytest

from agentops.llm.ratelimit import Limits, LocalLimiter, RedisLimiter
from agentops.llm.types import RateBudgetExhausted


@pytest.fixture(params=["redis", "local"])
def make_limiter(request):
    def make(burst_s):
        if request.param == "local":
            return LocalLimiter(burst_s=burst_s)
        client = request.getfixturevalue("redis_client")
        return RedisLimiter(client, burst_s=burst_s)

    return make


def bucket():
    return f"test-{uuid.uuid4().hex}:claude-haiku-4-5"


def reserve(limiter, name, limits, *, tokens_in=0, tokens_out=0, max_wait_s=30.0):
    return limiter.reserve(
        bucket=name,
        limits=limits,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        max_wait_s=max_wait_s,
    )


def max_in_any_window(admissions, index, window):
    """The most of budget `index` admitted within any window of `window` seconds."""
    times = sorted(admissions, key=lambda a: a[0])
    best, start, running = 0, 0, 0
    for end in range(len(times)):
        running += times[end][1][index]
        while times[end][0] - times[start][0] > window:
            running -= times[start][1][index]
            start += 1
        best = max(best, running)
    return best


def test_concurrent_threads_never_exceed_any_budget_in_any_window(make_limiter):
    # 10 requests/s, 400 input and 300 output tokens/s; the buckets hold half a second.
    limits = Limits(rpm=600, itpm=24_000, otpm=18_000)
    burst_s = 0.5
    limiter = make_limiter(burst_s)
    name = bucket()
    admissions = []
    lock = threading.Lock()
    rng = random.Random(7)
    plans = [[(rng.randint(5, 120), rng.randint(5, 90)) for _ in range(5)] for _ in range(8)]

    def worker(plan):
        for tokens_in, tokens_out in plan:
            reservation = reserve(limiter, name, limits, tokens_in=tokens_in, tokens_out=tokens_out)
            with lock:
                admissions.append((reservation.slot_at, reservation.costs))

    threads = [threading.Thread(target=worker, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(admissions) == 40
    per_second = [limit / 60 for limit in limits.as_tuple()]
    for index, rate in enumerate(per_second):
        for window in (0.1, 0.5, 1.0, 2.0):
            allowed = rate * (window + burst_s)
            assert max_in_any_window(admissions, index, window) <= allowed + 1e-6, (
                index,
                window,
            )
    # The run is paced, not refused: the whole demand fits in demand/rate seconds + burst.
    span = max(a[0] for a in admissions) - min(a[0] for a in admissions)
    total_in = sum(a[1][1] for a in admissions)
    assert span >= (total_in / per_second[1]) - burst_s - 0.05


def test_slots_are_first_come_first_served(make_limiter):
    limits = Limits(rpm=6000, itpm=6000, otpm=6000)  # 100 tokens/s
    limiter = make_limiter(1.0)
    name = bucket()
    big = reserve(limiter, name, limits, tokens_in=100)
    bigger = reserve(limiter, name, limits, tokens_in=90)
    small = reserve(limiter, name, limits, tokens_in=1)
    # The small call does not jump the queue ahead of the big one that asked first.
    assert big.slot_at <= bigger.slot_at <= small.slot_at
    assert bigger.wait_s > 0.8


def test_refund_returns_unused_budget(make_limiter):
    limits = Limits(rpm=1000, itpm=600, otpm=600)  # 10 tokens/s, bucket of 60
    limiter = make_limiter(6.0)
    name = bucket()
    first = reserve(limiter, name, limits, tokens_in=60, tokens_out=60)
    with pytest.raises(RateBudgetExhausted) as caught:
        reserve(limiter, name, limits, tokens_in=30, max_wait_s=0)
    assert caught.value.budget == "input_tokens"
    assert "input tokens per minute" in str(caught.value)
    limiter.settle(first, input_tokens=10, output_tokens=5)
    reserve(limiter, name, limits, tokens_in=30, tokens_out=30, max_wait_s=0)


def test_extra_usage_is_charged(make_limiter):
    limits = Limits(rpm=1000, itpm=600, otpm=600)
    limiter = make_limiter(6.0)
    name = bucket()
    first = reserve(limiter, name, limits, tokens_in=10)
    limiter.settle(first, input_tokens=55, output_tokens=0)
    with pytest.raises(RateBudgetExhausted):
        reserve(limiter, name, limits, tokens_in=20, max_wait_s=0)


def test_server_headers_reconcile_downwards_only(make_limiter):
    limits = Limits(rpm=1000, itpm=600, otpm=600)
    limiter = make_limiter(6.0)
    name = bucket()
    first = reserve(limiter, name, limits, tokens_in=5)
    # The server says more is left than we think: nothing changes.
    limiter.settle(first, headers={"anthropic-ratelimit-input-tokens-remaining": "100000"})
    state = limiter.state(bucket=name, limits=limits)
    assert state["budgets"][1]["available"] >= 54
    assert state["server"]["anthropic-ratelimit-input-tokens-remaining"] == "100000"
    # The server says almost nothing is left (another client uses the same key): we follow.
    second = reserve(limiter, name, limits, tokens_in=5)
    limiter.settle(second, headers={"anthropic-ratelimit-input-tokens-remaining": "2"})
    with pytest.raises(RateBudgetExhausted):
        reserve(limiter, name, limits, tokens_in=20, max_wait_s=0)
    assert limiter.state(bucket=name, limits=limits)["budgets"][1]["available"] <= 3


def test_retry_after_holds_every_new_slot(make_limiter):
    limits = Limits(rpm=1000, itpm=100_000, otpm=100_000)
    limiter = make_limiter(60.0)
    name = bucket()
    first = reserve(limiter, name, limits, tokens_in=5)
    limiter.settle(first, input_tokens=0, output_tokens=0, hold_s=20)
    with pytest.raises(RateBudgetExhausted) as caught:
        reserve(limiter, name, limits, tokens_in=5, max_wait_s=5)
    assert caught.value.budget == "retry_after"
    later = reserve(limiter, name, limits, tokens_in=5, max_wait_s=30)
    assert 19 < later.wait_s <= 20.1


def test_a_refused_call_reserves_nothing(make_limiter):
    limits = Limits(rpm=60, itpm=600, otpm=600)
    limiter = make_limiter(1.0)  # one request per second, a bucket of one
    name = bucket()
    reserve(limiter, name, limits)
    for _ in range(5):
        with pytest.raises(RateBudgetExhausted) as caught:
            reserve(limiter, name, limits, max_wait_s=0.5)
        assert caught.value.budget == "requests"
    assert reserve(limiter, name, limits, max_wait_s=2).wait_s <= 1.01


def test_a_call_bigger_than_a_minute_of_budget_is_refused(make_limiter):
    limiter = make_limiter(60.0)
    with pytest.raises(RateBudgetExhausted) as caught:
        reserve(limiter, bucket(), Limits(60, 1000, 500), tokens_out=501)
    assert caught.value.budget == "output_tokens"
    assert "needs 501 output tokens" in str(caught.value)


def reference_bucket_refusals(events, *, capacity, rate, slack):
    """Replay admissions (-amount) and refunds (+amount) through a plain token bucket that
    refills at `rate`, holds `capacity` and takes refunds back up to it: the model
    Anthropic documents (and the simulator server implements). Return what it would refuse.
    """
    level, clock, refused = capacity, None, []
    for at, amount in sorted(events, key=lambda e: (e[0], -e[1])):
        if clock is not None:
            level = min(capacity, level + (at - clock) * rate)
        clock = at
        if amount < 0 and level + slack < -amount:
            refused.append((at, -amount, level))
        level = min(capacity, level + amount)
    return refused


def test_with_refunds_under_concurrency_a_server_bucket_never_refuses(make_limiter):
    # Callers sleep until their slot, "call" for a moment and settle with less than they
    # reserved. Refunded budget is reused at once; a server keeping the same budgets as a
    # refilling bucket (as Anthropic's do) would never have answered 429.
    limits = Limits(rpm=1200, itpm=30_000, otpm=30_000)  # 20 requests, 500 tokens a second
    burst_s = 0.4
    limiter = make_limiter(burst_s)
    name = bucket()
    events = [[], [], []]
    lock = threading.Lock()
    rng = random.Random(11)
    plans = [[(rng.randint(40, 150), rng.uniform(0.3, 1.0)) for _ in range(6)] for _ in range(6)]

    def worker(plan):
        for estimate, share in plan:
            reservation = reserve(limiter, name, limits, tokens_in=estimate, tokens_out=estimate)
            limiter.wait(reservation)
            sent_at = reservation.slot_at  # when the limiter counted it as sent
            time.sleep(0.01)  # the call itself
            real = int(estimate * share)
            settled_at = time.time()
            limiter.settle(reservation, input_tokens=real, output_tokens=real)
            with lock:
                for index, cost in enumerate(reservation.costs):
                    events[index].append((sent_at, -cost))
                    refund = cost - (1 if index == 0 else real)
                    if refund:
                        events[index].append((settled_at, refund))

    threads = [threading.Thread(target=worker, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(events[0]) == 36
    for index, limit in enumerate(limits.as_tuple()):
        rate = limit / 60
        refused = reference_bucket_refusals(
            # slack: refund times are taken in this thread, a few ms off the limiter's clock
            events[index],
            capacity=rate * burst_s,
            rate=rate,
            slack=rate * 0.01,
        )
        assert not refused, (index, refused[:3])


def test_waiting_slots_move_with_refunds_and_server_headers(make_limiter):
    limits = Limits(rpm=1000, itpm=600, otpm=600)  # 10 tokens/s, bucket of 60
    limiter = make_limiter(6.0)
    name = bucket()
    first = reserve(limiter, name, limits, tokens_in=60)
    waiting = reserve(limiter, name, limits, tokens_in=30)
    assert 2.5 < waiting.wait_s <= 3.05
    # The first call used 40 of its 60: the waiting one needs 10 more, a second from now.
    limiter.settle(first, input_tokens=40, output_tokens=0)
    now_us, slot_us = limiter._claim(name, waiting.ticket)
    assert 0.8 < (slot_us - now_us) / 1_000_000 < 1.1
    # The server says nothing is left (another client uses the key): it moves back.
    other = reserve(limiter, name, limits, tokens_in=0, max_wait_s=10)
    limiter.settle(other, headers={"anthropic-ratelimit-input-tokens-remaining": "0"})
    now_us, slot_us = limiter._claim(name, waiting.ticket)
    assert 2.5 < (slot_us - now_us) / 1_000_000 <= 3.05


@pytest.mark.parametrize("backend", ["redis", "local"])
def test_the_send_margin_admits_a_little_later_than_the_api_would(backend, request):
    # 120 per minute with a 1 s burst: the API takes 2 requests at once. With a 0.25 s send
    # margin we admit 1 at once and the second 0.25 s later, so a second request that
    # leaves faster than the first still finds the API's bucket refilled; the state shows
    # the API's view.
    limits = Limits(120, 10**9, 10**9)
    if backend == "local":
        limiter = LocalLimiter(burst_s=1, margin_s=0.25)
    else:
        limiter = RedisLimiter(request.getfixturevalue("redis_client"), burst_s=1, margin_s=0.25)
    name = bucket()
    first = reserve(limiter, name, limits)
    second = reserve(limiter, name, limits)
    assert first.wait_s == 0
    assert second.wait_s == pytest.approx(0.25, abs=0.05)
    requests = limiter.state(bucket=name, limits=limits)["budgets"][0]
    assert requests["capacity"] == 2


def test_a_server_count_is_compared_with_the_bucket_when_the_call_was_sent():
    # 60 per minute, a 10 s burst: 10 requests. The server counted 9 remaining when the
    # call reached it; its answer comes a second later, when both buckets have refilled by
    # one. Read as "9 remaining now", the header would throw that second's refill away.
    now = [1000.0]
    limiter = LocalLimiter(burst_s=10, clock=lambda: now[0])
    limits = Limits(60, 10**6, 10**6)
    name = bucket()
    sent = reserve(limiter, name, limits)
    now[0] += 1.0
    headers = {
        "anthropic-ratelimit-requests-remaining": "9",
        "anthropic-ratelimit-input-tokens-remaining": str(10**6),
        "anthropic-ratelimit-output-tokens-remaining": str(10**6),
    }
    limiter.settle(sent, input_tokens=0, output_tokens=0, headers=headers)
    requests = limiter.state(bucket=name, limits=limits)["budgets"][0]
    assert requests["available"] == 10
    # A server that counted fewer than we had then still moves the bucket forward.
    later = reserve(limiter, name, limits)
    now[0] += 1.0
    limiter.settle(
        later,
        input_tokens=0,
        output_tokens=0,
        headers={**headers, **{"anthropic-ratelimit-requests-remaining": "3"}},
    )
    assert limiter.state(bucket=name, limits=limits)["budgets"][0]["available"] == 4


def test_a_settlement_that_cannot_reach_redis_keeps_the_reservation_not_the_error(
    redis_client, caplog
):
    import socket

    import redis

    limits = Limits(rpm=60, itpm=10_000, otpm=10_000)
    # A minute's burst: the buckets hold a minute's budget and refill slowly.
    limiter = RedisLimiter(redis_client, burst_s=60)
    name = bucket()
    reservation = reserve(limiter, name, limits, tokens_in=100, tokens_out=5_000)
    with socket.socket() as probe:  # a port nothing listens on: Redis is gone
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    gone = redis.Redis(host="127.0.0.1", port=dead_port, socket_connect_timeout=0.5)
    RedisLimiter(gone, burst_s=60).settle(reservation, input_tokens=100, output_tokens=20)
    assert "Could not settle" in caplog.text
    # Nothing was refunded: the 5,000 reserved output tokens stay spent until they refill.
    output_budget = limiter.state(bucket=name, limits=limits)["budgets"][2]
    assert output_budget["available"] < output_budget["capacity"] - 4_000
