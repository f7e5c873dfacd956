"""Faults the transport and the server can inject, and the API's error bodies."""

import json
import random
from dataclasses import dataclass

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
DEFAULT_MESSAGES = {
    429: "This request would exceed the rate limit for your organization (simulated fault).",
    500: "Internal server error (simulated fault).",
    529: "Overloaded (simulated fault).",
}
FAULT_NAMES = ("429", "529", "500", "hang", "drop", "malformed")
MALFORMED_BODY = b'{"id": "msg_sim_broken", "type": "message", "content": [{"type": "te'


def error_body(status: int, message: str, *, error_type: str | None = None, error_code=None):
    error = {"type": error_type or ERROR_TYPES.get(status, "api_error"), "message": message}
    if error_code:
        error["details"] = {"error_code": error_code}
    return json.dumps({"type": "error", "error": error}).encode()


@dataclass(frozen=True)
class Fault:
    """One injected failure.

    kind: "status" (an error response), "malformed" (200 with a broken JSON body), "drop"
    (the connection closes without a response), "connect" (the connection cannot be made;
    transport only) or "hang" (no answer until the client times out).
    """

    kind: str
    status: int = 0
    retry_after: float | None = None
    error_type: str | None = None
    message: str | None = None
    error_code: str | None = None

    @property
    def response_status(self) -> int | None:
        """The HTTP status the client sees, or None when no response arrives."""
        return {"status": self.status, "malformed": 200}.get(self.kind)

    @property
    def name(self) -> str:
        return str(self.status) if self.kind == "status" else self.kind

    def body(self) -> bytes:
        message = self.message or DEFAULT_MESSAGES.get(self.status, f"Error {self.status}")
        return error_body(
            self.status, message, error_type=self.error_type, error_code=self.error_code
        )

    def headers(self) -> dict:
        headers = {"content-type": "application/json"}
        if self.retry_after is not None:
            headers["retry-after"] = _format_seconds(self.retry_after)
        return headers

    @classmethod
    def from_name(cls, name: str, *, retry_after: float = 1) -> "Fault":
        name = str(name).strip().lower()
        if name.isdigit():
            status = int(name)
            return cls("status", status=status, retry_after=retry_after if status == 429 else None)
        if name in ("hang", "drop", "malformed", "connect"):
            return cls(name)
        raise ValueError(f"unknown fault {name!r}; use one of {', '.join(FAULT_NAMES)}")


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def scheduled_fault(*, seed: int, index: int, fault_rate: float, faults) -> Fault | None:
    """The fault for the index-th API request under this seed, or None.

    It depends only on (seed, index), so a run can be replayed and a test can predict it.
    """
    if fault_rate <= 0 or not faults:
        return None
    rng = random.Random(f"fault:{seed}:{index}")
    if rng.random() >= fault_rate:
        return None
    return Fault.from_name(faults[rng.randrange(len(faults))])
