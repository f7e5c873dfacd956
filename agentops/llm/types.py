"""What a model call returns and the errors it raises. Both are plain data the run engine
stores on its Step rows, so everything here is JSON-safe and never holds an API key."""

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class ModelResult:
    content: list[dict]  # JSON-safe content blocks, as the Messages API returned them
    stop_reason: str
    usage: dict  # input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens
    cost_usd: Decimal
    latency_ms: int
    request_id: str
    model: str
    ratelimit: dict[str, str] = field(default_factory=dict)  # anthropic-ratelimit-* headers
    simulated: bool = False
    waited_ms: int = 0  # time spent waiting for rate budget before the request was sent
    # With model_call(defer_record=True): the call's unsaved ModelCallRecord, which the
    # caller saves in its own transaction (llm.services.call_record_save if that fails).
    record: object = None

    @property
    def text(self):
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self):
        return [b for b in self.content if b.get("type") == "tool_use"]


class ModelError(Exception):
    """A model call that did not produce a message. `kind` is a short stable name
    (`rate_limited`, `overloaded`, `authentication`, ...); `transient` says whether the same
    request may succeed later; `retry_after` is the server's advice in seconds, if any."""

    transient = False

    def __init__(self, message, *, kind, status=None, retry_after=None, request_id=""):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id or ""

    def as_dict(self):
        return {
            "kind": self.kind,
            "status": self.status,
            "transient": self.transient,
            "retry_after": self.retry_after,
            "message": self.message,
            "request_id": self.request_id,
        }


class TransientModelError(ModelError):
    """429 (not a spend limit), 529, other 5xx, timeouts, dropped connections, bad bodies."""

    transient = True


class PermanentModelError(ModelError):
    """400, 401, 403, 404, 413, a spend-limit 429: the same request will fail again."""

    transient = False


class RateBudgetExhausted(PermanentModelError):
    """The rate limiter could not admit the call within the allowed wait."""

    def __init__(self, message, *, budget, wait_s=None):
        super().__init__(message, kind="rate_budget_exhausted")
        self.budget = budget
        self.wait_s = wait_s
