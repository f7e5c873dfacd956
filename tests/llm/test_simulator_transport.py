"""SimulatorTransport: recording, headers and injected faults, seen through the real SDK."""

import asyncio
import json
import threading

import anthropic
import httpx2
import pytest

from agentops.llm.simulator.faults import Fault
from agentops.llm.simulator.transport import SimulatorTransport

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "Give me three names for a bakery"}]


def make_client(transport, max_retries=0):
    return anthropic.Anthropic(
        api_key="sim",
        base_url="http://simulator.local",
        max_retries=max_retries,
        http_client=httpx2.Client(transport=transport),
    )


@pytest.fixture
def transport():
    return SimulatorTransport()


@pytest.fixture
def client(transport):
    client = make_client(transport)
    yield client
    client.close()


def create(client, step=None, **kwargs):
    headers = {"X-Agentops-Step": step} if step else {}
    return client.messages.create(
        model=MODEL, max_tokens=256, messages=MESSAGES, extra_headers=headers, **kwargs
    )


def test_records_every_request_with_headers_and_body(client, transport):
    create(client, step="step-1", system="Be playful.")
    client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    received = transport.received
    assert [(r.method, r.path) for r in received] == [
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),
    ]
    first = received[0]
    assert first.body == {
        "model": MODEL,
        "max_tokens": 256,
        "messages": MESSAGES,
        "system": "Be playful.",
    }
    assert first.headers["authorization"] == "Bearer sim"
    assert first.step == "step-1"
    assert received[1].step is None


def test_counts_requests_per_step_header(client, transport):
    create(client, step="a")
    create(client, step="b")
    create(client, step="a")
    create(client)
    assert transport.step_counts() == {"a": 2, "b": 1}
    assert transport.stats.as_dict()["by_step"] == {"a": 2, "b": 1}
    transport.clear()
    assert transport.received == []


def test_answers_carry_request_id_and_rate_limit_headers():
    # A stopped clock keeps the buckets from refilling between admission and answer.
    with make_client(SimulatorTransport(clock=lambda: 100.0)) as client:
        raw = client.messages.with_raw_response.create(
            model=MODEL, max_tokens=256, messages=MESSAGES
        )
    message = raw.parse()
    assert raw.request_id.startswith("req_")
    headers = raw.headers
    for name in ("requests", "input-tokens", "output-tokens", "tokens"):
        for suffix in ("limit", "remaining", "reset"):
            assert f"anthropic-ratelimit-{name}-{suffix}" in headers
    assert headers["anthropic-ratelimit-requests-limit"] == "4000"
    # Output is estimated from max_tokens up front and the unused part given back.
    assert headers["anthropic-ratelimit-requests-remaining"] == "3999"
    output_remaining = int(headers["anthropic-ratelimit-output-tokens-remaining"])
    assert output_remaining == 400_000 - message.usage.output_tokens
    input_remaining = int(headers["anthropic-ratelimit-input-tokens-remaining"])
    assert input_remaining == 2_000_000 - message.usage.input_tokens


def test_request_without_api_key_is_refused(transport):
    with httpx2.Client(transport=transport, base_url="http://simulator.local") as http:
        response = http.post("/v1/messages", json={"model": MODEL})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_rate_limit_fault_is_a_rate_limit_error_with_retry_after(client, transport):
    transport.fail_next(429, retry_after=2, message="slow down")
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(client)
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "2"
    assert error.request_id.startswith("req_")
    assert error.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert create(client).stop_reason == "end_turn"


def test_spend_limit_fault_carries_its_error_code(client, transport):
    transport.fail_next(429, error_code="enforced_spend_limit_reached", message="spend limit")
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(client)
    assert caught.value.error_code == "enforced_spend_limit_reached"
    assert "retry-after" not in caught.value.response.headers


def test_overloaded_and_server_errors(client, transport):
    transport.inject("529", "500")
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        create(client)
    assert overloaded.value.status_code == 529
    assert overloaded.value.type == "overloaded_error"
    with pytest.raises(anthropic.InternalServerError) as server_error:
        create(client)
    assert server_error.value.status_code == 500
    assert server_error.value.type == "api_error"


def test_dropped_and_refused_connections_are_connection_errors(client, transport):
    transport.inject("drop", "connect")
    with pytest.raises(anthropic.APIConnectionError):
        create(client)
    with pytest.raises(anthropic.APIConnectionError):
        create(client)
    assert transport.pending_faults() == 0
    assert len(transport.received) == 2


def test_hang_is_a_timeout(client, transport):
    transport.inject(Fault("hang"))
    with pytest.raises(anthropic.APITimeoutError):
        create(client)


def test_malformed_body_is_a_decode_error(client, transport):
    transport.inject("malformed")
    with pytest.raises(json.JSONDecodeError):
        create(client)


def test_times_repeats_a_fault(client, transport):
    transport.fail_next(500, times=2)
    for _ in range(2):
        with pytest.raises(anthropic.InternalServerError):
            create(client)
    assert create(client).content


def test_sdk_retries_honour_the_injected_faults(transport):
    transport.fail_next(529, times=2)
    with make_client(transport, max_retries=2) as client:
        assert create(client).stop_reason == "end_turn"
    assert len(transport.received) == 3


def test_unknown_fault_name_is_rejected(transport):
    with pytest.raises(ValueError, match="unknown fault"):
        transport.inject("explode")


def test_async_client_gets_the_same_answers(transport):
    async def ask():
        async with anthropic.AsyncAnthropic(
            api_key="sim",
            base_url="http://simulator.local",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=transport),
        ) as client:
            return await client.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)

    # A thread of its own: other tests (Playwright) may leave an event loop in this one.
    results = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(ask())))
    thread.start()
    thread.join(timeout=30)
    message = results[0]
    with make_client(transport) as client:
        assert create(client).content == message.content
    assert len(transport.received) == 2
