"""Routing shared by the in-process transport and the HTTP server."""

import json
import threading
import uuid
from collections import Counter
from dataclasses import dataclass

from .catalogue import list_models, retrieve_model
from .conversation import SimulatorRequestError, parse_request
from .core import count_tokens, simulate_messages
from .faults import error_body
from .ratelimit import RateLimiter, RateLimits
from .streaming import message_events
from .tokens import PromptCache, count_input_tokens

STEP_HEADER = "x-agentops-step"
JSON = "application/json"


@dataclass
class ApiResponse:
    status: int
    headers: dict
    body: bytes


def new_request_id() -> str:
    return "req_sim" + uuid.uuid4().hex[:24]


def _error(status: int, message: str, headers: dict | None = None, **kwargs) -> ApiResponse:
    return ApiResponse(
        status, {"content-type": JSON, **(headers or {})}, error_body(status, message, **kwargs)
    )


def _ok(payload, headers: dict | None = None) -> ApiResponse:
    return ApiResponse(200, {"content-type": JSON, **(headers or {})}, json.dumps(payload).encode())


class SimulatorApp:
    """Answers API routes. One app is one simulated API key: one prompt cache, one limiter."""

    def __init__(self, *, seed: int = 0, limits: RateLimits | None = None, clock=None):
        self.seed = seed
        self.prompt_cache = PromptCache(**({"clock": clock} if clock else {}))
        self.limiter = RateLimiter(limits, **({"clock": clock} if clock else {}))

    def handle(
        self, method: str, path: str, query: dict, body: bytes, headers: dict | None = None
    ) -> ApiResponse:
        """Answer one request; `headers` has lower-cased names."""
        path = path.rstrip("/") or "/"
        headers = headers or {}
        if path.startswith("/v1/") and not (
            headers.get("x-api-key") or headers.get("authorization")
        ):
            # Any key is accepted, but like the API a request without one is refused.
            return _error(401, "x-api-key header is required")
        if path == "/v1/messages":
            return self._messages(body) if method == "POST" else self._not_allowed(method, path)
        if path == "/v1/messages/count_tokens":
            return self._count(body) if method == "POST" else self._not_allowed(method, path)
        if path == "/v1/models":
            return self._models(query) if method == "GET" else self._not_allowed(method, path)
        if path.startswith("/v1/models/") and method == "GET":
            model = retrieve_model(path.removeprefix("/v1/models/"))
            if model is None:
                return _error(404, f"model: {path.removeprefix('/v1/models/')}")
            return _ok(model)
        return _error(404, f"Not found: {method} {path}")

    @staticmethod
    def _not_allowed(method: str, path: str) -> ApiResponse:
        return _error(
            405, f"Method {method} not allowed on {path}", error_type="invalid_request_error"
        )

    @staticmethod
    def _json(body: bytes):
        try:
            return json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise SimulatorRequestError(f"The request body is not valid JSON: {exc}") from exc

    def _messages(self, raw: bytes) -> ApiResponse:
        try:
            body = self._json(raw)
            conversation = parse_request(body, seed=self.seed)
            input_tokens = count_input_tokens(body)
        except SimulatorRequestError as exc:
            return _error(exc.status, exc.message, error_type=exc.error_type)
        admission = self.limiter.admit(
            input_tokens=input_tokens, max_tokens=conversation.max_tokens
        )
        if not admission.allowed:
            unit = admission.limit_name.replace("-", " ")
            return _error(
                429,
                f"This request would exceed the rate limit for your organization of "
                f"{admission.limit} {unit} per minute. Please wait before trying again "
                "(simulated).",
                {**admission.headers, "retry-after": str(admission.retry_after)},
            )
        try:
            message = simulate_messages(body, seed=self.seed, prompt_cache=self.prompt_cache)
        except SimulatorRequestError as exc:
            self.limiter.settle(
                max_tokens=conversation.max_tokens, output_tokens=0, cache_read_tokens=0
            )
            return _error(exc.status, exc.message, error_type=exc.error_type)
        usage = message["usage"]
        headers = self.limiter.settle(
            max_tokens=conversation.max_tokens,
            output_tokens=usage["output_tokens"],
            cache_read_tokens=usage["cache_read_input_tokens"],
        )
        if body.get("stream"):
            events = message_events(message)
            return ApiResponse(200, {"content-type": "text/event-stream", **headers}, events)
        return _ok(message, headers)

    def _count(self, raw: bytes) -> ApiResponse:
        try:
            return _ok(count_tokens(self._json(raw)))
        except SimulatorRequestError as exc:
            return _error(exc.status, exc.message, error_type=exc.error_type)

    @staticmethod
    def _models(query: dict) -> ApiResponse:
        try:
            limit = int(query.get("limit", 20))
        except ValueError:
            return _error(400, "limit: Input should be a valid integer")
        return _ok(
            list_models(
                limit=limit, after_id=query.get("after_id"), before_id=query.get("before_id")
            )
        )


class Stats:
    """Thread-safe counts of API requests: in total, per status or fault, per step header."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._by_status = Counter()
            self._by_step = Counter()
            self._by_path = Counter()
            self._faults = Counter()

    def record(self, *, path: str, step: str | None, status: int | None, fault: str | None):
        with self._lock:
            self._total += 1
            self._by_path[path] += 1
            if step:
                self._by_step[step] += 1
            if status is not None:
                self._by_status[str(status)] += 1
            if fault:
                self._faults[fault] += 1

    def as_dict(self) -> dict:
        with self._lock:
            return {
                "requests": self._total,
                "by_status": dict(self._by_status),
                "by_step": dict(self._by_step),
                "by_path": dict(self._by_path),
                "faults": dict(self._faults),
            }
