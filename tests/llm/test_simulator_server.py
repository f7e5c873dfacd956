"""The simulator's loopback HTTP server, started in process on a free port."""

import json

import anthropic
import httpx2
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agentops.llm.simulator.faults import FAULT_NAMES, scheduled_fault
from agentops.llm.simulator.server import (
    LATENCY_HEADER,
    ServerOptions,
    latency_for,
    start_simulator_server,
)

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "Suggest a name for a hiking club"}]


@pytest.fixture
def serve():
    servers = []

    def start(**options):
        server = start_simulator_server(host="127.0.0.1", port=0, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def sdk(server, **kwargs):
    return anthropic.Anthropic(api_key="sim", base_url=server.url, max_retries=0, **kwargs)


def create(client, step=None):
    return client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=128,
        messages=MESSAGES,
        extra_headers={"X-Agentops-Step": step} if step else {},
    )


def test_answers_over_http_like_the_transport(serve):
    server = serve()
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    with sdk(server) as client:
        raw = create(client)
        message = raw.parse()
        assert message.stop_reason == "end_turn"
        assert "hiking club" in message.content[0].text
        assert raw.request_id.startswith("req_")
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "4000"
        assert client.messages.count_tokens(model=MODEL, messages=MESSAGES).input_tokens > 0
        assert "claude-opus-4-5" in [model.id for model in client.models.list()]


def test_latency_is_applied_from_the_seeded_schedule(serve):
    server = serve(latency_ms=30, jitter_ms=20, seed=3)
    with sdk(server) as client:
        applied = [float(create(client).headers[LATENCY_HEADER]) for _ in range(3)]
    options = ServerOptions(latency_ms=30, jitter_ms=20, seed=3)
    assert applied == [latency_for(options, index) for index in range(3)]
    assert all(30 <= value <= 50 for value in applied)
    assert len(set(applied)) == 3


def test_requests_per_minute_limit_returns_a_real_429(serve):
    server = serve(rpm=2)
    with sdk(server) as client:
        create(client)
        second = create(client)
        assert second.headers["anthropic-ratelimit-requests-remaining"] == "0"
        with pytest.raises(anthropic.RateLimitError) as caught:
            create(client)
    error = caught.value
    headers = error.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["anthropic-ratelimit-requests-limit"] == "2"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert "2 requests per minute" in error.api_message
    assert error.type == "rate_limit_error"


def test_output_tokens_per_minute_counts_max_tokens_up_front(serve):
    # 60 output tokens per minute refill at one token per second.
    server = serve(otpm=60)
    with sdk(server) as client:
        first = client.messages.create(model=MODEL, max_tokens=40, messages=MESSAGES)
        assert first.usage.output_tokens >= 20
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model=MODEL, max_tokens=60, messages=MESSAGES)
    assert "60 output tokens per minute" in caught.value.api_message
    headers = caught.value.response.headers
    assert headers["anthropic-ratelimit-output-tokens-limit"] == "60"
    assert 1 <= int(headers["retry-after"]) <= 60


def test_stats_count_requests_per_status_and_step(serve):
    server = serve(rpm=3)
    with sdk(server) as client:
        create(client, step="run-1:step-1")
        create(client, step="run-1:step-2")
        create(client, step="run-1:step-1")
        with pytest.raises(anthropic.RateLimitError):
            create(client, step="run-1:step-2")
        create_models = client.models.list()
        assert create_models.data
    stats = httpx2.get(f"{server.url}/_stats").json()
    assert stats["requests"] == 5
    assert stats["by_status"] == {"200": 4, "429": 1}
    assert stats["by_step"] == {"run-1:step-1": 2, "run-1:step-2": 2}
    assert stats["by_path"] == {"/v1/messages": 4, "/v1/models": 1}
    reset = httpx2.post(f"{server.url}/_stats/reset").json()
    assert reset == {"reset": True}
    assert httpx2.get(f"{server.url}/_stats").json()["requests"] == 0


def _outcome(client) -> str:
    try:
        client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    except anthropic.RateLimitError:
        return "429"
    except anthropic.InternalServerError as exc:
        return str(exc.status_code)
    except anthropic.APITimeoutError:
        return "hang"
    except anthropic.APIConnectionError:
        return "drop"
    except json.JSONDecodeError:
        return "malformed"
    return "-"


def test_fault_schedule_is_deterministic_for_a_seed(serve):
    count = 14
    expected = [
        fault.name if fault else "-"
        for fault in (
            scheduled_fault(seed=4, index=i, fault_rate=0.5, faults=FAULT_NAMES)
            for i in range(count)
        )
    ]
    assert set(FAULT_NAMES) <= set(expected)  # this seed exercises every kind of fault
    server = serve(seed=4, fault_rate=0.5, hang_seconds=5)
    with sdk(server, timeout=1.0) as client:
        observed = [_outcome(client) for _ in range(count)]
    assert observed == expected
    faults = httpx2.get(f"{server.url}/_stats").json()["faults"]
    assert sum(faults.values()) == count - expected.count("-")


def test_faults_can_be_limited_to_some_kinds(serve):
    server = serve(seed=1, fault_rate=1.0, faults=("529",))
    with sdk(server) as client:
        assert [_outcome(client) for _ in range(3)] == ["529", "529", "529"]


def test_a_simulator_bug_is_a_500_not_a_dropped_connection(serve, monkeypatch):
    server = serve()

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(server.app, "handle", broken)
    with sdk(server) as client, pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    assert caught.value.status_code == 500
    assert "simulator: boom" in caught.value.api_message


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="unknown fault"):
        start_simulator_server(faults=("boom",))
    with pytest.raises(ValueError, match="fault_rate"):
        start_simulator_server(fault_rate=2)


def test_management_command_serves_for_a_duration(capsys):
    call_command("simulator", port=0, duration=0.3, seed=5, faults="429,drop")
    output = capsys.readouterr().out
    assert "Simulator listening on http://127.0.0.1:" in output
    assert "(seed 5)" in output


def test_management_command_rejects_unknown_faults():
    with pytest.raises(CommandError, match="unknown fault"):
        call_command("simulator", port=0, duration=0.1, faults="429,explode")


def test_rate_limit_is_taken_when_the_request_arrives_not_after_its_latency(serve):
    import threading
    import time

    # A long latency: the request is still being answered while the bucket is looked at.
    server = serve(rpm=5, latency_ms=5_000)
    outcome = []

    def call():
        with sdk(server) as client:
            try:
                create(client)
                outcome.append("answered")
            except anthropic.APIConnectionError:
                outcome.append("dropped")  # the server stopped during the latency

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 4
    remaining = "5"
    while remaining == "5" and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = server.app.limiter.snapshot()["anthropic-ratelimit-requests-remaining"]
    assert remaining == "4"
    assert caller.is_alive()  # admitted, and still within its latency
    server.stop()
    caller.join(timeout=10)
    assert outcome == ["dropped"]


def test_a_429_is_answered_without_the_latency(serve):
    server = serve(rpm=1, latency_ms=3_000)
    server.app.limiter.admit(input_tokens=1, max_tokens=1)  # the minute's one request is used
    with sdk(server) as client, pytest.raises(anthropic.RateLimitError):
        client.with_options(timeout=2.0).messages.create(
            model=MODEL, max_tokens=16, messages=MESSAGES
        )
