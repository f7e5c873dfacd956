"""An offline, deterministic stand-in for Anthropic's Messages API.

simulate_messages / count_tokens are the pure core; SimulatorTransport plugs it into the
SDK's httpx2 client in process. See docs/architecture.md (## Simulator).
"""

from .catalogue import SIMULATED_MODELS, list_models
from .conversation import MARKERS, SimulatorRequestError
from .core import count_tokens, simulate_messages
from .faults import FAULT_NAMES, Fault
from .ratelimit import RateLimiter, RateLimits
from .tokens import PromptCache, estimate_tokens
from .transport import ReceivedRequest, SimulatorTransport

__all__ = [
    "FAULT_NAMES",
    "MARKERS",
    "SIMULATED_MODELS",
    "Fault",
    "PromptCache",
    "RateLimiter",
    "RateLimits",
    "ReceivedRequest",
    "SimulatorRequestError",
    "SimulatorTransport",
    "count_tokens",
    "estimate_tokens",
    "list_models",
    "simulate_messages",
]
