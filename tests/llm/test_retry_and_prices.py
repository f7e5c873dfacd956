"""The retry policy, retry-after parsing and the price table."""

from decimal import Decimal
from email.utils import formatdate

import httpx2
import pytest

from agentops.llm.catalogue import BUILTIN_MODELS, PRICES, cost_of, price_for
from agentops.llm.errors import parse_retry_after, scrub
from agentops.llm.retry import retry_delay


def test_retry_delay_honours_retry_after(settings):
    settings.AGENTOPS_RETRY_MAX_DELAY_S = 60
    assert retry_delay(attempt=1, retry_after=7.5) == 7.5
    assert retry_delay(attempt=9, retry_after=0) == 0


def test_retry_delay_caps_retry_after_and_backoff(settings):
    settings.AGENTOPS_RETRY_MAX_DELAY_S = 30
    assert retry_delay(attempt=1, retry_after=3600) == 30
    delays = [retry_delay(attempt=12, retry_after=None) for _ in range(200)]
    assert max(delays) <= 30 and min(delays) >= 15


def test_backoff_grows_exponentially_with_jitter(settings):
    settings.AGENTOPS_RETRY_MAX_DELAY_S = 600
    for attempt in (1, 2, 3, 4, 5):
        ceiling = 2 ** (attempt - 1)
        delays = {retry_delay(attempt=attempt, retry_after=None) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered, not a fixed value


def test_parse_retry_after_forms():
    assert parse_retry_after(httpx2.Headers({"retry-after-ms": "1500"})) == 1.5
    assert parse_retry_after(httpx2.Headers({"retry-after": "12"})) == 12
    in_a_minute = formatdate(timeval=None, usegmt=True)
    assert 0 <= parse_retry_after(httpx2.Headers({"retry-after": in_a_minute})) <= 1
    assert parse_retry_after(httpx2.Headers({"retry-after": "soon"})) is None
    assert parse_retry_after(httpx2.Headers({})) is None


def test_scrub_removes_keys():
    key = "sk-ant-api03-abcdefghijklmnop_QRS-tuv"
    assert key not in scrub(f"bad key {key} given")
    assert "my-custom-secret-value" not in scrub(
        "x my-custom-secret-value y", ("my-custom-secret-value",)
    )


def test_cost_of_uses_all_four_prices():
    usage = {
        "input_tokens": 1_000_000,
        "output_tokens": 1_000_000,
        "cache_creation_input_tokens": 1_000_000,
        "cache_read_input_tokens": 1_000_000,
    }
    # Sonnet 5.5: 2 + 10 + 2.50 + 0.20 (its model page on platform.claude.com)
    assert cost_of("claude-sonnet-5-5", usage) == Decimal("14.700000")
    assert cost_of("claude-haiku-4-5", {"input_tokens": 1234, "output_tokens": 56}) == Decimal(
        "0.001514"
    )


def test_haiku_5_5_long_prompts_cost_more():
    short = cost_of("claude-haiku-5-5", {"input_tokens": 100_000, "output_tokens": 0})
    long = cost_of("claude-haiku-5-5", {"input_tokens": 100_001, "output_tokens": 0})
    assert short == Decimal("0.010000")
    assert long == Decimal("0.050001")


@pytest.mark.parametrize(
    ("model", "stand_in", "exact"),
    [
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5", True),
        ("claude-opus-9-9", "claude-opus-5-5", False),
        ("claude-fable-5-2", "claude-fable-5-1", False),
    ],
)
def test_unknown_models_are_priced_by_family(model, stand_in, exact):
    price = price_for(model)
    assert price.input == PRICES[stand_in].input and price.exact is exact


def test_an_unknown_family_costs_nothing_and_says_so():
    price = price_for("some-other-model")
    assert not price.exact and cost_of("some-other-model", {"input_tokens": 10}) == 0


def test_every_builtin_model_has_a_price():
    assert all(model in PRICES for model, _ in BUILTIN_MODELS)
