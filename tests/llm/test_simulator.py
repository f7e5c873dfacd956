"""The simulator through the real anthropic SDK, in process (SimulatorTransport)."""

import anthropic
import httpx2
import pytest
from jsonschema import validate

from agentops.llm.simulator import SimulatorRequestError, count_tokens, simulate_messages
from agentops.llm.simulator.transport import SimulatorTransport

MODEL = "claude-sonnet-4-6"

FETCH_TOOL = {
    "name": "fetch_page",
    "description": "Fetch a web page and return its text.",
    "input_schema": {
        "type": "object",
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "max_chars": {"type": "integer", "minimum": 100, "maximum": 5000},
        },
        "required": ["url", "max_chars"],
    },
}
SEARCH_TOOL = {
    "name": "search",
    "description": "Search the web.",
    "input_schema": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 3},
            "depth": {"enum": ["fast", "deep"]},
            "filters": {
                "type": "array",
                "items": {"$ref": "#/$defs/filter"},
                "minItems": 1,
            },
        },
        "required": ["query", "depth", "filters"],
        "$defs": {
            "filter": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "weight": {"type": "number"}},
                "required": ["field", "weight"],
            }
        },
    },
}


@pytest.fixture
def transport():
    return SimulatorTransport()


@pytest.fixture
def client(transport):
    http_client = httpx2.Client(transport=transport)
    yield anthropic.Anthropic(
        api_key="sim", base_url="http://simulator.local", max_retries=0, http_client=http_client
    )
    http_client.close()


def ask(client, text, **kwargs):
    kwargs.setdefault("max_tokens", 1024)
    return client.messages.create(
        model=MODEL, messages=[{"role": "user", "content": text}], **kwargs
    )


def test_text_answer_derives_from_request_and_system_prompt(client):
    message = ask(
        client,
        "Compare caching strategies for a busy invoice service",
        system="You are a terse performance engineer.",
    )
    assert message.model == MODEL
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.id.startswith("msg_")
    text = message.content[0].text
    assert message.content[0].type == "text"
    assert "Compare caching strategies for a busy invoice service" in text
    assert "invoice" in text.lower()
    assert "terse performance engineer" in text
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == pytest.approx(len(text) / 4, abs=1)
    assert message.usage.cache_read_input_tokens == 0


def test_same_request_same_answer_and_seed_changes_wording():
    body = {
        "model": MODEL,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "Plan a migration of billing data to Postgres"}],
    }
    first = simulate_messages(body, seed=1)
    assert simulate_messages(body, seed=1) == first
    texts = {simulate_messages(body, seed=seed)["content"][0]["text"] for seed in range(6)}
    assert len(texts) > 1
    other = dict(body, messages=[{"role": "user", "content": "Write a haiku about winter"}])
    assert simulate_messages(other, seed=1)["content"] != first["content"]


def test_tool_use_round_trip_with_schema_valid_input(client, transport):
    question = "Please fetch_page https://docs.example.org/guide and tell me what it says"
    first = ask(client, question, tools=[FETCH_TOOL])
    assert first.stop_reason == "tool_use"
    calls = [block for block in first.content if block.type == "tool_use"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "fetch_page"
    assert call.id.startswith("toolu_")
    validate(call.input, FETCH_TOOL["input_schema"])
    assert call.input["url"] == "https://docs.example.org/guide"

    second = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        tools=[FETCH_TOOL],
        messages=[
            {"role": "user", "content": question},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "content": "The guide explains deployment with blue-green releases.",
                    }
                ],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    text = second.content[0].text
    assert "blue-green releases" in text
    assert "`fetch_page` returned" in text
    sent = transport.bodies()[-1]
    assert sent["messages"][2]["content"][0]["tool_use_id"] == call.id


def test_error_tool_results_are_reported_honestly(client):
    first = ask(client, "fetch_page https://a.example/x", tools=[FETCH_TOOL])
    call = next(block for block in first.content if block.type == "tool_use")
    second = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        tools=[FETCH_TOOL],
        messages=[
            {"role": "user", "content": "fetch_page https://a.example/x"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "content": "HTTP 503 from upstream",
                        "is_error": True,
                    }
                ],
            },
        ],
    )
    text = second.content[0].text
    assert "failed: HTTP 503 from upstream" in text
    assert "None of the tool calls succeeded" in text


def test_parallel_tool_use_when_several_tools_fit(client):
    message = ask(
        client,
        "Read https://a.example/one and https://b.example/two, then search for reviews deep",
        tools=[FETCH_TOOL, SEARCH_TOOL],
    )
    calls = [block for block in message.content if block.type == "tool_use"]
    assert [call.name for call in calls] == ["fetch_page", "fetch_page", "search"]
    assert {calls[0].input["url"], calls[1].input["url"]} == {
        "https://a.example/one",
        "https://b.example/two",
    }
    assert calls[2].input["depth"] == "deep"
    validate(calls[2].input, SEARCH_TOOL["input_schema"])
    assert len({call.id for call in calls}) == 3
    assert message.stop_reason == "tool_use"


def test_disable_parallel_tool_use_gives_one_call(client):
    message = ask(
        client,
        "Read https://a.example/one and https://b.example/two",
        tools=[FETCH_TOOL],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert [block.type for block in message.content].count("tool_use") == 1


def test_forced_tool_choice_calls_that_tool_without_preamble(client):
    message = ask(
        client,
        "Anything at all",
        tools=[FETCH_TOOL, SEARCH_TOOL],
        tool_choice={"type": "tool", "name": "search"},
    )
    assert [block.type for block in message.content] == ["tool_use"]
    assert message.content[0].name == "search"
    validate(message.content[0].input, SEARCH_TOOL["input_schema"])


def test_tool_choice_any_calls_a_tool_even_when_none_is_named(client):
    message = ask(client, "Hello", tools=[SEARCH_TOOL], tool_choice={"type": "any"})
    assert message.stop_reason == "tool_use"


def test_no_tool_call_when_the_request_does_not_call_for_one(client):
    message = ask(client, "Summarize the benefits of unit tests", tools=[FETCH_TOOL])
    assert message.stop_reason == "end_turn"
    assert all(block.type == "text" for block in message.content)


def test_missing_tool_result_is_rejected_like_the_api(client):
    first = ask(client, "fetch_page https://a.example/x", tools=[FETCH_TOOL])
    with pytest.raises(anthropic.BadRequestError, match="without `tool_result`"):
        client.messages.create(
            model=MODEL,
            max_tokens=100,
            tools=[FETCH_TOOL],
            messages=[
                {"role": "user", "content": "fetch_page https://a.example/x"},
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": "and then?"},
            ],
        )


def test_max_tokens_truncates_the_answer(client):
    full = ask(client, "Describe the water cycle in detail for students")
    short = ask(client, "Describe the water cycle in detail for students", max_tokens=10)
    assert short.stop_reason == "max_tokens"
    assert short.usage.output_tokens <= 10
    assert full.content[0].text.startswith(short.content[0].text)
    assert len(short.content[0].text) < len(full.content[0].text)


def test_refusal_marker(client):
    message = ask(client, "Do the thing [sim:refusal]")
    assert message.stop_reason == "refusal"
    assert message.content == []
    assert message.stop_details.type == "refusal"


def test_pause_turn_marker_then_continuation(client):
    question = "Research solar panel efficiency [sim:pause_turn]"
    paused = ask(client, question)
    assert paused.stop_reason == "pause_turn"
    resumed = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        messages=[
            {"role": "user", "content": question},
            {"role": "assistant", "content": paused.content},
        ],
    )
    assert resumed.stop_reason == "end_turn"


def test_max_tokens_marker(client):
    message = ask(client, "Explain photosynthesis [sim:max_tokens]")
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text


def test_stop_sequence_marker(client):
    message = ask(client, "List the planets [sim:stop_sequence]", stop_sequences=["###"])
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "###"


def test_context_window_marker(client):
    message = ask(client, "Summarize everything [sim:context_window]")
    assert message.stop_reason == "model_context_window_exceeded"


def test_thinking_block_comes_first_with_a_signature(client):
    message = ask(
        client,
        "Should we shard the orders table?",
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2000},
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert "shard the orders table" in message.content[0].thinking
    assert message.content[0].signature
    thinking_tokens = -(-len(message.content[0].thinking) // 4)
    text_tokens = -(-len(message.content[1].text) // 4)
    assert message.usage.output_tokens == thinking_tokens + text_tokens


def test_thinking_budget_must_be_below_max_tokens(client):
    with pytest.raises(anthropic.BadRequestError, match="budget_tokens"):
        ask(client, "Hi", max_tokens=1500, thinking={"type": "enabled", "budget_tokens": 2000})


def test_prompt_cache_reads_on_the_second_call(client):
    system = [
        {"type": "text", "text": "Policy handbook. " * 400, "cache_control": {"type": "ephemeral"}}
    ]
    first = ask(client, "What is the leave policy?", system=system)
    second = ask(client, "What is the travel policy?", system=system)
    assert first.usage.cache_creation_input_tokens > 1024
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0


def test_count_tokens_matches_message_usage(client):
    messages = [{"role": "user", "content": "How many tokens is this sentence exactly?"}]
    counted = client.messages.count_tokens(model=MODEL, messages=messages, system="Be brief.")
    message = client.messages.create(
        model=MODEL, max_tokens=200, messages=messages, system="Be brief."
    )
    assert counted.input_tokens == message.usage.input_tokens
    assert count_tokens({"model": MODEL, "messages": messages}) == {
        "input_tokens": counted.input_tokens - 3
    }


def test_models_list_and_retrieve(client):
    models = list(client.models.list())
    ids = [model.id for model in models]
    assert {"claude-opus-4-5", "claude-sonnet-4-6", "claude-haiku-4-5"} <= set(ids)
    assert all(model.display_name.startswith("Claude ") for model in models)
    assert client.models.retrieve("claude-haiku-4-5").display_name == "Claude Haiku 4.5"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-unknown")


def test_invalid_request_is_a_400(client):
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        client.messages.create(model=MODEL, max_tokens=10, messages=[])


def test_core_raises_for_invalid_body():
    with pytest.raises(SimulatorRequestError):
        simulate_messages({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})


def test_steps_marker_calls_a_tool_each_turn_until_n_minus_one_rounds(client):
    messages = [{"role": "user", "content": "Summarise the plan. [sim:steps=3]"}]
    stops = []
    for _ in range(5):
        reply = client.messages.create(
            model=MODEL, max_tokens=1024, tools=[SEARCH_TOOL], messages=messages
        )
        stops.append(reply.stop_reason)
        if reply.stop_reason != "tool_use":
            break
        [call] = [block for block in reply.content if block.type == "tool_use"]
        assert call.name == "search"
        messages += [
            {"role": "assistant", "content": reply.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "ok"}],
            },
        ]
    assert stops == ["tool_use", "tool_use", "end_turn"]
    assert "[sim:steps" not in reply.content[0].text


def test_steps_marker_without_tools_just_answers(client):
    reply = ask(client, "Summarise the plan. [sim:steps=3]")
    assert reply.stop_reason == "end_turn"
