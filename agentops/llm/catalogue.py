"""The models a team can pick and the one price table every cost comes from.

Prices are USD per million tokens: input, output, cache write (5-minute TTL) and cache read,
from Anthropic's published pricing (each model's page on platform.claude.com, checked on
24 November 2026). A model missing from the table (a new release the Models API lists) is
priced as the newest model of its family, so a cost is always recorded; `Price.exact` says
whether it was.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

MILLION = Decimal(1_000_000)
DEFAULT_MODEL = "claude-sonnet-5-5"


@dataclass(frozen=True)
class Price:
    input: Decimal
    output: Decimal
    cache_write: Decimal
    cache_read: Decimal
    exact: bool = True
    # Haiku 5.5 bills a whole request at higher rates when its prompt is long.
    long_prompt_tokens: int | None = None
    long_prompt: "Price | None" = None


def _p(input_, output, cache_write, cache_read, **extra):
    return Price(
        Decimal(input_), Decimal(output), Decimal(cache_write), Decimal(cache_read), **extra
    )


PRICES = {
    "claude-fable-5-1": _p("10", "50", "12.50", "0.25"),
    "claude-mythos-5-1": _p("10", "50", "12.50", "0.25"),
    "claude-fable-5": _p("10", "50", "12.50", "1.00"),
    "claude-mythos-5": _p("10", "50", "12.50", "1.00"),
    "claude-opus-5-5": _p("4", "20", "5.00", "0.20"),
    "claude-opus-5": _p("5", "25", "6.25", "0.50"),
    "claude-opus-4-8": _p("5", "25", "6.25", "0.50"),
    "claude-opus-4-7": _p("5", "25", "6.25", "0.50"),
    "claude-opus-4-6": _p("5", "25", "6.25", "0.50"),
    "claude-opus-4-5": _p("5", "25", "6.25", "0.50"),
    "claude-sonnet-5-5": _p("2", "10", "2.50", "0.20"),
    "claude-sonnet-5": _p("2", "10", "2.50", "0.20"),
    "claude-sonnet-4-6": _p("3", "15", "3.75", "0.30"),
    "claude-sonnet-4-5": _p("3", "15", "3.75", "0.30"),
    "claude-haiku-5-5": _p(
        "0.10",
        "0.50",
        "0.125",
        "0.01",
        long_prompt_tokens=100_000,
        long_prompt=_p("0.50", "2.50", "0.625", "0.05"),
    ),
    "claude-haiku-4-5": _p("1", "5", "1.25", "0.10"),
}

# The built-in list offered when no key has listed its models yet: current models first.
BUILTIN_MODELS = [
    ("claude-sonnet-5-5", "Claude Sonnet 5.5"),
    ("claude-opus-5-5", "Claude Opus 5.5"),
    ("claude-haiku-5-5", "Claude Haiku 5.5"),
    ("claude-fable-5-1", "Claude Fable 5.1"),
    ("claude-opus-4-8", "Claude Opus 4.8"),
    ("claude-sonnet-5", "Claude Sonnet 5"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
]

_FAMILY_FALLBACK = [
    ("fable", "claude-fable-5-1"),
    ("mythos", "claude-mythos-5-1"),
    ("opus", "claude-opus-5-5"),
    ("sonnet", "claude-sonnet-5-5"),
    ("haiku", "claude-haiku-5-5"),
]
_ZERO = Price(Decimal(0), Decimal(0), Decimal(0), Decimal(0), exact=False)


def _base_id(model):
    # Dated snapshots ("claude-haiku-4-5-20251001") share their alias's price.
    head, _, tail = model.rpartition("-")
    return head if tail.isdigit() and len(tail) == 8 else model


def price_for(model: str) -> Price:
    model = (model or "").strip().lower()
    price = PRICES.get(model) or PRICES.get(_base_id(model))
    if price is not None:
        return price
    for family, stand_in in _FAMILY_FALLBACK:
        if family in model:
            found = PRICES[stand_in]
            return Price(
                found.input,
                found.output,
                found.cache_write,
                found.cache_read,
                exact=False,
                long_prompt_tokens=found.long_prompt_tokens,
                long_prompt=found.long_prompt,
            )
    return _ZERO


def _tokens(usage, name):
    return int((usage or {}).get(name) or 0)


def cost_of(model: str, usage: dict) -> Decimal:
    """USD for one call's usage, to the micro-dollar."""
    price = price_for(model)
    uncached = _tokens(usage, "input_tokens")
    written = _tokens(usage, "cache_creation_input_tokens")
    read = _tokens(usage, "cache_read_input_tokens")
    output = _tokens(usage, "output_tokens")
    if price.long_prompt and uncached + written + read > price.long_prompt_tokens:
        price = price.long_prompt
    total = (
        uncached * price.input
        + output * price.output
        + written * price.cache_write
        + read * price.cache_read
    ) / MILLION
    return total.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def model_choices(team) -> list[tuple[str, str]]:
    """(id, label) pairs for model pickers: what the team's tested key listed, else built-in."""
    from .models import KeyTestStatus, TeamCredential

    credential = TeamCredential.objects.filter(team=team).first() if team else None
    if credential and credential.test_status == KeyTestStatus.OK and credential.available_models:
        return [(m["id"], m.get("name") or m["id"]) for m in credential.available_models]
    return list(BUILTIN_MODELS)
