"""Map every failure of the anthropic SDK to one ModelError, once, in one place.

Messages are rebuilt from the response's own error text and scrubbed of anything that looks
like an API key; the SDK exception (which holds the request and its headers) is not chained.
"""

import email.utils
import logging
import re
import time

import anthropic
import httpx2

from .types import ModelError, PermanentModelError, TransientModelError

log = logging.getLogger(__name__)
_KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_\-]+")
_SPEND_WORDS = re.compile(r"spend limit|usage limit|credit balance|billing", re.IGNORECASE)

# Statuses the same request can succeed on later. Anything else 4xx is the request's fault.
_TRANSIENT_STATUS = {408, 409, 429}
_KIND_BY_STATUS = {
    400: "invalid_request",
    401: "authentication",
    402: "billing",
    403: "permission",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    413: "request_too_large",
    422: "invalid_request",
    429: "rate_limited",
    500: "server_error",
    502: "server_error",
    503: "unavailable",
    504: "timeout",
    529: "overloaded",
}


def scrub(text, secrets=()):
    """Remove API keys from text meant for logs, pages or stored errors."""
    text = str(text)
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", text)


def parse_retry_after(headers):
    """Seconds from retry-after-ms, retry-after (seconds) or retry-after (HTTP date)."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(float(raw_ms) / 1000.0, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    return max(email.utils.mktime_tz(parsed) - time.time(), 0.0)


def _is_spend_limit(error):
    code = getattr(error, "error_code", None) or ""
    if "spend_limit" in code:
        return True
    api_message = getattr(error, "api_message", None) or ""
    return bool(_SPEND_WORDS.search(api_message))


def classify(error, *, secrets=()) -> ModelError:
    """The ModelError for an exception raised by the SDK during one call."""
    if isinstance(error, ModelError):
        return error
    if isinstance(error, anthropic.APIStatusError):
        status = error.status_code
        detail = getattr(error, "api_message", None) or str(error)
        message = scrub(f"HTTP {status}: {detail}", secrets)
        retry_after = parse_retry_after(error.response.headers)
        request_id = getattr(error, "request_id", "") or ""
        if status == 429 and _is_spend_limit(error):
            return PermanentModelError(
                f"spend limit reached: {message}",
                kind="spend_limit",
                status=status,
                request_id=request_id,
            )
        kind = _KIND_BY_STATUS.get(status, "server_error" if status >= 500 else "client_error")
        if status >= 500 or status in _TRANSIENT_STATUS:
            return TransientModelError(
                message, kind=kind, status=status, retry_after=retry_after, request_id=request_id
            )
        return PermanentModelError(message, kind=kind, status=status, request_id=request_id)
    if isinstance(error, anthropic.APITimeoutError):
        return TransientModelError("the request timed out", kind="timeout")
    if isinstance(error, anthropic.APIConnectionError):
        cause = type(error.__cause__).__name__ if error.__cause__ else "connection error"
        return TransientModelError(f"connection failed ({cause})", kind="connection")
    if isinstance(error, anthropic.APIResponseValidationError | ValueError):
        # A 2xx whose body is not a valid message: a proxy or a half-written response.
        return TransientModelError(
            scrub(f"malformed response: {type(error).__name__}", secrets),
            kind="malformed_response",
            status=getattr(error, "status_code", None),
        )
    if isinstance(error, httpx2.TransportError):
        return TransientModelError(f"connection failed ({type(error).__name__})", kind="connection")
    # Anything else is a bug on our side; retrying would repeat it.
    log.error("unexpected error in a model call", exc_info=(type(error), error, None))
    return PermanentModelError(
        scrub(f"unexpected error: {type(error).__name__}", secrets), kind="unexpected"
    )
