"""SimulatorTransport: the simulator inside the SDK's own HTTP client, with no socket."""

import json
import threading
from collections import Counter, deque
from dataclasses import dataclass

import httpx2

from .app import STEP_HEADER, SimulatorApp, Stats, new_request_id
from .faults import Fault
from .ratelimit import DEFAULT_ITPM, DEFAULT_OTPM, DEFAULT_RPM, RateLimits


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    query: dict
    headers: dict  # lower-cased names
    body: object  # the parsed JSON body, or the raw text when it is not JSON, or None

    @property
    def step(self) -> str | None:
        return self.headers.get(STEP_HEADER)


class SimulatorTransport(httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    """Answers POST /v1/messages, POST /v1/messages/count_tokens and GET /v1/models[/id].

    Give it to the SDK: anthropic.Anthropic(api_key="sim", base_url="http://simulator.local",
    max_retries=0, http_client=httpx2.Client(transport=SimulatorTransport())), or to
    anthropic.AsyncAnthropic through httpx2.AsyncClient(transport=...).
    Every request is recorded in `received`; faults queued with `fail_next` or `inject`
    are served, one per request, before any real answer.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        rpm: int = DEFAULT_RPM,
        itpm: int = DEFAULT_ITPM,
        otpm: int = DEFAULT_OTPM,
        clock=None,
    ):
        limits = RateLimits(rpm=rpm, itpm=itpm, otpm=otpm)
        self.app = SimulatorApp(seed=seed, limits=limits, clock=clock)
        self.stats = Stats()
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
        self._faults: deque[Fault] = deque()

    @property
    def received(self) -> list[ReceivedRequest]:
        """A copy of every request received so far, oldest first."""
        with self._lock:
            return list(self._received)

    def bodies(self, path: str = "/v1/messages") -> list:
        return [r.body for r in self.received if r.path == path]

    def step_counts(self) -> dict:
        """How many requests carried each X-Agentops-Step value."""
        return dict(Counter(r.step for r in self.received if r.step))

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self._faults.clear()
        self.stats.reset()

    def inject(self, *faults) -> None:
        """Queue faults (Fault objects or names: "429", "529", "500", "hang", "drop",
        "malformed", "connect"); each is served to one upcoming request, in order."""
        with self._lock:
            for fault in faults:
                self._faults.append(fault if isinstance(fault, Fault) else Fault.from_name(fault))

    def fail_next(
        self,
        status: int = 429,
        *,
        retry_after: float | None = None,
        error_type: str | None = None,
        message: str | None = None,
        error_code: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests with this error status and body."""
        fault = Fault(
            "status",
            status=status,
            retry_after=retry_after,
            error_type=error_type,
            message=message,
            error_code=error_code,
        )
        self.inject(*([fault] * times))

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        raw = request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        path = request.url.path
        query = dict(request.url.params)
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            body = raw.decode("utf-8", "replace")
        with self._lock:
            self._received.append(ReceivedRequest(request.method, path, query, headers, body))
            fault = self._faults.popleft() if self._faults else None
        step = headers.get(STEP_HEADER)
        if fault is not None:
            self.stats.record(path=path, step=step, status=fault.response_status, fault=fault.name)
            return self._serve_fault(fault, request)
        answer = self.app.handle(request.method, path, query, raw, headers)
        self.stats.record(path=path, step=step, status=answer.status, fault=None)
        return httpx2.Response(
            answer.status,
            headers={**answer.headers, "request-id": new_request_id()},
            content=answer.body,
            request=request,
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """The same answers for anthropic.AsyncAnthropic (httpx2.AsyncClient)."""
        await request.aread()
        return self.handle_request(request)

    def _serve_fault(self, fault: Fault, request: httpx2.Request) -> httpx2.Response:
        if fault.kind == "connect":
            raise httpx2.ConnectError("simulated: connection refused", request=request)
        if fault.kind == "drop":
            raise httpx2.RemoteProtocolError(
                "simulated: server disconnected without sending a response", request=request
            )
        if fault.kind == "hang":
            # In process there is no clock to wait on: report what the client would see.
            raise httpx2.ReadTimeout(
                "simulated: the server did not answer in time", request=request
            )
        headers = {"request-id": new_request_id(), "content-type": "application/json"}
        if fault.kind == "malformed":
            from .faults import MALFORMED_BODY

            return httpx2.Response(200, headers=headers, content=MALFORMED_BODY, request=request)
        headers.update(self.app.limiter.snapshot() if fault.status == 429 else {})
        headers.update(fault.headers())
        return httpx2.Response(fault.status, headers=headers, content=fault.body(), request=request)
