"""Which credential a team's calls use, and the anthropic client built from it.

In order: the team's stored key, then ANTHROPIC_API_KEY, then the in-process simulator.
ANTHROPIC_BASE_URL points the first two elsewhere (e.g. at `manage.py simulator`, with
ANTHROPIC_API_KEY=sim). The SDK's own retries are always off: the run engine retries.
"""

import threading
from dataclasses import dataclass

import anthropic
import httpx2
from django.conf import settings

from .crypto import UndecryptableKey, decrypt, fingerprint

SIMULATOR_BASE_URL = "http://simulator.local"
# Keys that stand for the simulator HTTP server rather than a real account.
SIMULATOR_KEYS = {"sim", "simulator"}


class Source:
    TEAM = "team"
    ENVIRONMENT = "environment"
    SIMULATOR = "simulator"


@dataclass(frozen=True)
class Credential:
    source: str
    api_key: str = ""
    base_url: str = ""
    bucket: str = ""  # overrides the bucket name (the benchmark uses a fresh one per run)

    def __repr__(self):  # never show the key, not even in a debugger or a traceback
        return f"Credential(source={self.source!r}, base_url={self.base_url!r})"

    @property
    def simulated(self):
        return self.source == Source.SIMULATOR or self.api_key in SIMULATOR_KEYS

    @property
    def bucket_id(self):
        """Names the shared rate-limit bucket: a fingerprint, never the key."""
        if self.bucket:
            return self.bucket
        if self.source == Source.SIMULATOR:
            return "simulator"
        return fingerprint(self.api_key)

    @property
    def last4(self):
        return self.api_key[-4:] if self.api_key else ""


def credential_for_team(team) -> Credential:
    from .models import TeamCredential

    stored = TeamCredential.objects.filter(team=team).first() if team is not None else None
    if stored is not None and stored.has_key:
        return Credential(Source.TEAM, decrypt(stored.encrypted_key), settings.ANTHROPIC_BASE_URL)
    if settings.ANTHROPIC_API_KEY:
        return Credential(
            Source.ENVIRONMENT, settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL
        )
    return Credential(Source.SIMULATOR)


def uses_simulator(team) -> bool:
    """True when this team's calls are answered by the simulator (for the UI label)."""
    try:
        return credential_for_team(team).simulated
    except UndecryptableKey:
        return False


_clients = {}
_clients_lock = threading.Lock()
_building_lock = threading.Lock()
_simulator_transport = None


def simulator_transport():
    """The process-wide in-process simulator (its prompt cache persists across calls)."""
    global _simulator_transport
    from agentops.llm.simulator import SimulatorTransport

    with _clients_lock:
        if _simulator_transport is None:
            _simulator_transport = SimulatorTransport()
        return _simulator_transport


# The in-process simulator records every request (tests read them). A long-running embedded
# worker must not keep them all, so the history is dropped once it grows past this.
SIMULATOR_HISTORY_LIMIT = 1000


def trim_simulator_history():
    transport = _simulator_transport
    if transport is not None and len(transport.received) > SIMULATOR_HISTORY_LIMIT:
        transport.clear()


def build_client(credential: Credential, *, transport=None) -> anthropic.Anthropic:
    """A new client for one credential. `transport` replaces the network (tests, bench)."""
    timeout = float(settings.AGENTOPS_MODEL_TIMEOUT_S)
    if credential.source == Source.SIMULATOR:
        transport = transport or simulator_transport()
        return anthropic.Anthropic(
            api_key="simulator",
            base_url=SIMULATOR_BASE_URL,
            max_retries=0,
            timeout=timeout,
            http_client=httpx2.Client(transport=transport, timeout=timeout),
        )
    http_client = httpx2.Client(transport=transport, timeout=timeout) if transport else None
    return anthropic.Anthropic(
        api_key=credential.api_key,
        base_url=credential.base_url or None,
        max_retries=0,
        timeout=timeout,
        http_client=http_client,
    )


def client_for_credential(credential: Credential) -> anthropic.Anthropic:
    """A cached client per credential and base URL, so connections are reused."""
    cache_key = (credential.source, credential.bucket_id, credential.base_url)
    with _clients_lock:
        client = _clients.get(cache_key)
    if client is not None:
        return client
    # A fan-out starts many calls at once on a fresh worker: they build one client (each
    # build loads the system's certificates), not one each.
    with _building_lock:
        with _clients_lock:
            client = _clients.get(cache_key)
        if client is None:
            client = build_client(credential)
            with _clients_lock:
                _clients[cache_key] = client
    return client


def client_for_team(team) -> anthropic.Anthropic:
    return client_for_credential(credential_for_team(team))


def forget_clients():
    """Drop cached clients (after a key is rotated or removed)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()
