"""Pieces of the simulator on their own: schemas, token buckets, the prompt cache, validation,
streaming and the role dispatch."""

import threading

import anthropic
import httpx2
import pytest
from jsonschema import validate

from agentops.llm.simulator import (
    MARKERS,
    PromptCache,
    RateLimiter,
    RateLimits,
    SimulatorRequestError,
    SimulatorTransport,
    simulate_messages,
)
from agentops.llm.simulator.conversation import parse_request
from agentops.llm.simulator.roles import ROLES, choose_role
from agentops.llm.simulator.schema import Hints, build_tool_input
from agentops.llm.simulator.server import start_simulator_server
from agentops.llm.simulator.tokens import Segment

MODEL = "claude-opus-4-5"


def body(text, **extra):
    return {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": text}],
    } | extra


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


# --- tool input from JSON Schema -------------------------------------------------------------

RICH_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 5, "maxLength": 40},
        "count": {"type": "integer", "minimum": 3, "maximum": 9, "multipleOf": 3},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "flag": {"type": "boolean"},
        "when": {"type": "string", "format": "date-time"},
        "contact": {"type": "string", "format": "email"},
        "id": {"type": "string", "format": "uuid"},
        "mode": {"enum": ["summary", "detail"]},
        "level": {"const": 2},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "uniqueItems": True},
        "maybe": {"type": ["null", "string"]},
        "target": {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "string"}]},
        "owner": {"$ref": "#/$defs/person"},
        "merged": {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
            ]
        },
        "optional_note": {"type": "string"},
    },
    "required": [
        "title",
        "count",
        "ratio",
        "flag",
        "when",
        "contact",
        "id",
        "mode",
        "level",
        "tags",
        "maybe",
        "target",
        "owner",
        "merged",
    ],
    "$defs": {
        "person": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 18}},
            "required": ["name", "age"],
        }
    },
}


def test_tool_input_is_valid_for_a_rich_schema():
    hints = Hints(text="give me the detail view", keywords=["detail", "view"], key="k")
    value = build_tool_input(RICH_SCHEMA, hints)
    validate(value, RICH_SCHEMA)
    assert value["mode"] == "detail"  # the enum value the user named
    assert value["level"] == 2
    assert value["count"] % 3 == 0
    assert value["owner"]["age"] >= 18
    assert set(value["merged"]) == {"a", "b"}
    assert "optional_note" not in value  # optional fields only when the conversation fills them
    assert build_tool_input(RICH_SCHEMA, hints) == value


def test_tool_input_fills_optional_url_and_query_from_the_conversation():
    schema = {
        "type": "object",
        "properties": {"url": {"type": "string"}, "query": {"type": "string"}},
    }
    value = build_tool_input(schema, Hints(text="look this up", url="https://x.example/"))
    assert value == {"url": "https://x.example/", "query": "look this up"}


def test_unsatisfiable_schema_gives_no_call_and_an_honest_note():
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"}},
        "required": ["code"],
    }
    assert build_tool_input(schema, Hints(text="anything")) is None
    tool = {"name": "lookup_code", "description": "Look up a code", "input_schema": schema}
    message = simulate_messages(body("Use lookup_code for my order", tools=[tool]))
    assert message["stop_reason"] == "end_turn"
    assert "could not form valid input for the `lookup_code` tool" in message["content"][0]["text"]


# --- rate limits -----------------------------------------------------------------------------


def test_token_bucket_refills_continuously():
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(rpm=60, itpm=600, otpm=600), clock=clock)
    for _ in range(60):
        assert limiter.admit(input_tokens=1, max_tokens=1).allowed
    refused = limiter.admit(input_tokens=1, max_tokens=1)
    assert not refused.allowed
    assert refused.limit_name == "requests"
    assert refused.retry_after == 1
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
    clock.now += 1.0  # one request per second comes back, not a whole new minute
    assert limiter.admit(input_tokens=1, max_tokens=1).allowed
    assert not limiter.admit(input_tokens=1, max_tokens=1).allowed


def test_retry_after_covers_the_missing_input_tokens():
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(rpm=0, itpm=600, otpm=0), clock=clock)
    assert limiter.admit(input_tokens=500, max_tokens=10).allowed
    refused = limiter.admit(input_tokens=300, max_tokens=10)
    assert (refused.allowed, refused.limit_name, refused.retry_after) == (
        False,
        "input-tokens",
        20,  # 200 tokens missing at 10 per second
    )
    assert "anthropic-ratelimit-requests-limit" not in refused.headers  # rpm switched off


def test_settle_gives_back_unused_output_and_cache_reads():
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(rpm=10, itpm=1000, otpm=1000), clock=clock)
    limiter.admit(input_tokens=400, max_tokens=800)
    headers = limiter.settle(max_tokens=800, output_tokens=100, cache_read_tokens=300)
    assert headers["anthropic-ratelimit-output-tokens-remaining"] == "900"
    assert headers["anthropic-ratelimit-input-tokens-remaining"] == "900"
    assert headers["anthropic-ratelimit-tokens-remaining"] == "900"


def test_a_request_bigger_than_the_limit_passes_only_with_a_full_bucket():
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(rpm=0, itpm=100, otpm=0), clock=clock)
    assert limiter.admit(input_tokens=500, max_tokens=1).allowed
    assert not limiter.admit(input_tokens=500, max_tokens=1).allowed


# --- prompt cache ----------------------------------------------------------------------------


def test_prompt_cache_expires_and_is_per_model():
    clock = FakeClock()
    cache = PromptCache(ttl_seconds=300, clock=clock)
    segments = [Segment(2000, "system text", True), Segment(10, "user: hi", False)]
    assert cache.account(model="m1", segments=segments, min_tokens=1024) == (2000, 0)
    assert cache.account(model="m1", segments=segments, min_tokens=1024) == (0, 2000)
    assert cache.account(model="m2", segments=segments, min_tokens=1024) == (2000, 0)
    clock.now += 301
    assert cache.account(model="m1", segments=segments, min_tokens=1024) == (2000, 0)
    assert cache.account(model="m1", segments=segments, min_tokens=4096) == (0, 0)


# --- validation ------------------------------------------------------------------------------


def test_tampered_thinking_block_is_rejected():
    request = body(
        "Plan the launch", max_tokens=3000, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    first = simulate_messages(request)
    thinking = dict(first["content"][0], thinking="edited")
    follow_up = dict(
        request,
        messages=[
            *request["messages"],
            {"role": "assistant", "content": [thinking, first["content"][1]]},
            {"role": "user", "content": "Go on"},
        ],
    )
    with pytest.raises(SimulatorRequestError, match="Invalid `signature`"):
        simulate_messages(follow_up)
    follow_up["messages"][1]["content"][0] = first["content"][0]
    assert simulate_messages(follow_up)["stop_reason"] == "end_turn"


def test_tool_result_for_an_unknown_call_is_rejected():
    request = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]},
        ],
    }
    with pytest.raises(SimulatorRequestError, match="unexpected `tool_use_id`"):
        simulate_messages(request)


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"model": ""}, "model"),
        ({"tool_choice": {"type": "tool", "name": "nope"}}, "no tool named"),
        ({"thinking": {"type": "enabled", "budget_tokens": 500}}, "greater than or equal to 1024"),
        (
            {
                "thinking": {"type": "adaptive"},
                "tools": [{"name": "t", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "any"},
            },
            "forces tool use",
        ),
    ],
)
def test_invalid_requests(extra, message):
    with pytest.raises(SimulatorRequestError, match=message):
        simulate_messages(body("hi", **extra))


def test_empty_messages_and_text_blocks_are_rejected():
    with pytest.raises(SimulatorRequestError, match="non-empty content"):
        simulate_messages(body(""))
    with pytest.raises(SimulatorRequestError, match="text content blocks must be non-empty"):
        simulate_messages(body([{"type": "text", "text": ""}]))


def test_prefill_ending_in_whitespace_is_rejected():
    request = body("Name a colour")
    request["messages"].append({"role": "assistant", "content": "The colour is "})
    with pytest.raises(SimulatorRequestError, match="trailing whitespace"):
        simulate_messages(request)
    request["messages"][-1]["content"] = "The colour is"
    assert simulate_messages(request)["stop_reason"] == "end_turn"


def test_a_stop_sequence_at_the_very_start_leaves_no_empty_text_block():
    message = simulate_messages(body("Outline a garden plan", stop_sequences=["##"]))
    assert message["stop_reason"] == "stop_sequence"
    assert message["content"] == []


def test_prompt_longer_than_the_context_window_is_rejected():
    with pytest.raises(SimulatorRequestError, match="prompt is too long"):
        simulate_messages(body("word " * 170_000))


def test_a_stop_sequence_in_the_answer_stops_it():
    message = simulate_messages(body("Outline a garden plan", stop_sequences=["\n\n"]))
    assert message["stop_reason"] == "stop_sequence"
    assert message["stop_sequence"] == "\n\n"
    assert message["content"][0]["text"].startswith("## ")
    assert "\n\n" not in message["content"][0]["text"]


def test_markers_are_the_documented_ones():
    assert set(MARKERS) == {
        "refusal",
        "pause_turn",
        "max_tokens",
        "stop_sequence",
        "context_window",
    }
    text = simulate_messages(body("Tell me about tides [sim:max_tokens]"))["content"][0]["text"]
    assert "[sim:" not in text


def test_worker_is_the_fallback_role():
    assert ROLES[-1].name == "worker"
    assert choose_role(parse_request(body("anything"))).name == "worker"


# --- streaming and concurrency ---------------------------------------------------------------


def _stream_equals_create(client):
    request = dict(
        model=MODEL,
        max_tokens=3000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[
            {
                "name": "fetch_page",
                "description": "Fetch a page",
                "input_schema": {
                    "type": "object",
                    "properties": {"url": {"type": "string"}},
                    "required": ["url"],
                },
            }
        ],
        messages=[{"role": "user", "content": "fetch_page https://x.example/a and summarize it"}],
    )
    with client.messages.stream(**request) as stream:
        kinds = {event.type for event in stream}
        streamed = stream.get_final_message()
    created = client.messages.create(**request)
    assert {"message_start", "content_block_start", "message_stop"} <= kinds
    assert streamed.model_dump() == created.model_dump()
    assert [block.type for block in streamed.content] == ["thinking", "text", "tool_use"]


def test_streaming_through_the_transport():
    with anthropic.Anthropic(
        api_key="sim",
        base_url="http://simulator.local",
        max_retries=0,
        http_client=httpx2.Client(transport=SimulatorTransport()),
    ) as client:
        _stream_equals_create(client)


def test_streaming_through_the_server():
    server = start_simulator_server()
    try:
        with anthropic.Anthropic(api_key="sim", base_url=server.url, max_retries=0) as client:
            _stream_equals_create(client)
    finally:
        server.stop()


def test_transport_records_concurrent_requests_from_many_threads():
    transport = SimulatorTransport()
    client = anthropic.Anthropic(
        api_key="sim",
        base_url="http://simulator.local",
        max_retries=0,
        http_client=httpx2.Client(transport=transport),
    )
    errors = []

    def call(step):
        try:
            client.messages.create(
                model=MODEL,
                max_tokens=64,
                messages=[{"role": "user", "content": f"question {step}"}],
                extra_headers={"X-Agentops-Step": f"s{step % 4}"},
            )
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    client.close()
    assert errors == []
    assert len(transport.received) == 20
    assert transport.step_counts() == {"s0": 5, "s1": 5, "s2": 5, "s3": 5}
