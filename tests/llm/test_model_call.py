"""model_call through the real SDK against the in-process simulator."""

import time
from decimal import Decimal

import pytest
from django.db import connection, transaction

from agentops.llm import services
from agentops.llm.models import CallStatus, ModelCallRecord, RateLimit
from agentops.llm.types import (
    ModelResult,
    PermanentModelError,
    RateBudgetExhausted,
    TransientModelError,
)

MODEL = "claude-haiku-4-5"
FETCH_TOOL = {
    "name": "fetch_page",
    "description": "Fetch a web page and return its text.",
    "input_schema": {
        "type": "object",
        "properties": {"url": {"type": "string"}},
        "required": ["url"],
    },
}


def ask(team, text="Give me three names for a bakery", **kwargs):
    kwargs.setdefault("max_tokens", 256)
    return services.model_call(
        team=team, model=MODEL, messages=[{"role": "user", "content": text}], **kwargs
    )


def test_text_call_returns_blocks_usage_cost_and_headers(team_a, sim):
    result = ask(team_a, system="You are terse.", step_id=42, usage_label="unit test")
    assert isinstance(result, ModelResult)
    assert result.stop_reason == "end_turn"
    assert result.content[0]["type"] == "text" and result.text
    assert result.usage["input_tokens"] > 0 and result.usage["output_tokens"] > 0
    assert set(result.usage) == set(services.USAGE_FIELDS)
    assert result.cost_usd == services.cost_of(MODEL, result.usage) > 0
    assert result.request_id
    assert result.simulated
    assert "anthropic-ratelimit-requests-remaining" in result.ratelimit
    sent = sim.received[-1]
    assert sent.headers["x-agentops-step"] == "42"
    assert sent.body["system"] == "You are terse."
    record = ModelCallRecord.objects.get()
    assert record.team == team_a and record.status == CallStatus.OK
    assert record.label == "unit test" and record.step_id == "42"
    assert record.cost_usd == result.cost_usd
    assert record.input_tokens == result.usage["input_tokens"]


def test_tool_use_round_trip(team_a, sim):
    question = "Please fetch_page https://docs.example.org/guide and say what it says"
    first = ask(team_a, question, tools=[FETCH_TOOL])
    assert first.stop_reason == "tool_use"
    call = first.tool_uses[0]
    assert call["name"] == "fetch_page" and call["input"]["url"].startswith("https://")
    second = services.model_call(
        team=team_a,
        model=MODEL,
        max_tokens=512,
        tools=[FETCH_TOOL],
        messages=[
            {"role": "user", "content": question},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call["id"], "content": "Blue-green."}
                ],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert second.text
    # The assistant turn went back exactly as it came: JSON-safe blocks round-trip.
    assert sim.received[-1].body["messages"][1]["content"] == first.content


def test_thinking_and_temperature_are_sent(team_a, sim):
    ask(team_a, max_tokens=2048, thinking_budget=1024)
    assert sim.received[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    ask(team_a, temperature=0.2)
    assert sim.received[-1].body["temperature"] == 0.2
    assert "thinking" not in sim.received[-1].body


@pytest.mark.parametrize(
    ("status", "kind", "error_class"),
    [
        (400, "invalid_request", PermanentModelError),
        (401, "authentication", PermanentModelError),
        (403, "permission", PermanentModelError),
        (404, "not_found", PermanentModelError),
        (413, "request_too_large", PermanentModelError),
        (429, "rate_limited", TransientModelError),
        (500, "server_error", TransientModelError),
        (503, "unavailable", TransientModelError),
        (529, "overloaded", TransientModelError),
    ],
)
def test_every_status_is_classified(team_a, sim, status, kind, error_class):
    sim.fail_next(status, retry_after=7 if status in (429, 529) else None)
    with pytest.raises(error_class) as caught:
        ask(team_a)
    error = caught.value
    assert error.kind == kind and error.status == status
    assert error.transient is (error_class is TransientModelError)
    if status in (429, 529):
        assert error.retry_after == 7
    else:
        assert error.retry_after is None or error_class is TransientModelError
    record = ModelCallRecord.objects.get()
    assert record.status == CallStatus.ERROR and record.error_kind == kind
    assert record.cost_usd == Decimal(0)
    assert len(sim.received) == 1  # the SDK did not retry


def test_spend_limit_429_is_permanent(team_a, sim):
    sim.fail_next(
        429, error_code="enforced_spend_limit_reached", message="Monthly spend limit reached."
    )
    with pytest.raises(PermanentModelError) as caught:
        ask(team_a)
    assert caught.value.kind == "spend_limit"
    assert caught.value.retry_after is None
    assert not caught.value.transient


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("drop", "connection"),
        ("connect", "connection"),
        ("hang", "timeout"),
        ("malformed", "malformed_response"),
    ],
)
def test_transport_faults_are_transient(team_a, sim, fault, kind):
    sim.inject(fault)
    with pytest.raises(TransientModelError) as caught:
        ask(team_a)
    assert caught.value.kind == kind
    assert caught.value.transient


def test_a_429_pauses_the_bucket_for_retry_after(team_a, sim):
    sim.fail_next(429, retry_after=30)
    with pytest.raises(TransientModelError):
        ask(team_a)
    # The next call would have to wait 30s; with a 1s allowance it is refused at once,
    # without reaching the API.
    with pytest.raises(RateBudgetExhausted) as caught:
        ask(team_a, max_wait_s=1)
    assert "rate budget exhausted" in str(caught.value)
    assert caught.value.budget == "retry_after"
    assert len(sim.received) == 1


def test_a_call_larger_than_the_budget_is_refused_with_the_budget_named(team_a, sim):
    RateLimit.objects.create(team=team_a, model=MODEL, rpm=10, itpm=100_000, otpm=1000)
    with pytest.raises(RateBudgetExhausted) as caught:
        ask(team_a, max_tokens=4096)
    assert "rate budget exhausted" in str(caught.value)
    assert "output tokens per minute" in str(caught.value)
    assert not sim.received


def test_model_call_refuses_to_run_inside_a_transaction(team_a, sim):
    with transaction.atomic(), pytest.raises(services.ModelCallInTransaction):
        ask(team_a)
    assert not sim.received


@pytest.fixture
def connection_held_during_call(monkeypatch):
    """For each call: whether its thread still held a database connection while it waited."""
    held = []
    real_execute_call = services.execute_call

    def watched(**kwargs):
        held.append(connection.connection is not None)
        return real_execute_call(**kwargs)

    monkeypatch.setattr(services, "execute_call", watched)
    return held


@pytest.mark.django_db(transaction=True)
def test_a_call_hands_its_database_connection_back_to_the_pool_while_it_waits(
    team_a, sim, connection_held_during_call
):
    # A fan-out runs more worker threads than the pool has connections; one held through a
    # long call would make the others wait for it.
    assert connection.settings_dict["OPTIONS"].get("pool")
    connection.ensure_connection()
    ask(team_a)
    assert connection_held_during_call == [False]
    # The call's record took a connection from the pool again.
    assert ModelCallRecord.objects.filter(team=team_a, status=CallStatus.OK).count() == 1
    assert connection.connection is not None


def test_inside_a_test_transaction_a_call_keeps_its_connection(
    team_a, sim, connection_held_during_call
):
    ask(team_a)
    assert connection_held_during_call == [True]


@pytest.mark.django_db(transaction=True)
def test_a_call_whose_record_cannot_be_written_still_returns_its_paid_answer(team_a, sim, caplog):
    # Raising would make the run engine call the model again for the same step.
    table = ModelCallRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
    try:
        result = ask(team_a)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT refuse_all")
    assert result.stop_reason == "end_turn" and result.text
    assert len(sim.received) == 1
    assert "Could not record a model call" in caplog.text
    assert not ModelCallRecord.objects.filter(team=team_a).exists()


def test_environment_key_and_base_url_are_used(team_a, settings, monkeypatch):
    from agentops.llm import client as llm_client

    settings.ANTHROPIC_API_KEY = "sim"
    settings.ANTHROPIC_BASE_URL = "http://127.0.0.1:9"
    credential = llm_client.credential_for_team(team_a)
    assert credential.source == "environment" and credential.simulated
    assert credential.base_url == "http://127.0.0.1:9"
    client = llm_client.build_client(credential)
    assert str(client.base_url).startswith("http://127.0.0.1:9")
    assert client.max_retries == 0
    settings.ANTHROPIC_API_KEY = "sk-ant-api03-" + "x" * 40
    assert not llm_client.uses_simulator(team_a)


def test_a_deferred_record_is_saved_once_and_never_mistaken_for_another(team_a, sim):
    record = ask(team_a, step_id=7, defer_record=True).record
    assert record.pk is None and not ModelCallRecord.objects.filter(team=team_a).exists()
    services.call_record_save_unless_saved(record)
    services.call_record_save_unless_saved(record)  # saved already: not twice
    assert ModelCallRecord.objects.filter(team=team_a, step_id="7").count() == 1
    # A rolled-back insert's id taken by another call's row (SQLite reuses ids).
    other = ask(team_a, step_id=8, defer_record=True).record
    other.pk = record.pk
    services.call_record_save_unless_saved(other)
    assert ModelCallRecord.objects.filter(team=team_a, step_id="8").count() == 1


def test_calls_that_start_together_on_a_fresh_process_build_one_client(team_a, monkeypatch):
    import threading

    from agentops.llm import client as llm_client

    credential = llm_client.credential_for_team(team_a)
    llm_client.forget_clients()
    built = []
    build = llm_client.build_client

    def slow_build(credential, **kwargs):
        built.append(credential)
        time.sleep(0.05)  # long enough for every thread to find the cache empty
        return build(credential, **kwargs)

    monkeypatch.setattr(llm_client, "build_client", slow_build)
    start = threading.Barrier(8)
    clients = []

    def call():
        start.wait()
        clients.append(llm_client.client_for_credential(credential))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and len({id(client) for client in clients}) == 1
    llm_client.forget_clients()


def test_the_input_estimate_learns_the_real_ratio(team_a, sim):
    services._tokens_per_char.pop("claude-estimate-test", None)
    prompt = [{"role": "user", "content": "word " * 2000}]
    first_guess = services.estimate_input_tokens(messages=prompt, model="claude-estimate-test")
    result = services.model_call(
        team=team_a, model="claude-estimate-test", messages=prompt, max_tokens=16
    )
    actual = result.usage["input_tokens"]
    learned = services.estimate_input_tokens(messages=prompt, model="claude-estimate-test")
    assert first_guess > actual * 1.2  # the first guess errs high...
    assert actual <= learned <= actual * 1.06 + 2  # ...then it follows the API, with a margin


def test_a_long_wait_for_the_rate_limit_is_told_before_it_begins(team_a, sim, settings):
    settings.AGENTOPS_RATE_WAIT_NOTICE_S = 0.5
    sim.fail_next(429, retry_after=1)
    with pytest.raises(TransientModelError):
        ask(team_a)
    heard = []
    ask(team_a, on_wait=lambda wait_s: heard.append((wait_s, len(sim.received))))
    [(wait_s, sent_before)] = heard
    assert 0.5 <= wait_s <= 1.0
    assert sent_before == 1  # told before the call went out, not after
    ask(team_a, on_wait=heard.append)
    assert len(heard) == 1  # no wait this time: nothing told
