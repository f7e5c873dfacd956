import pytest
from django.conf import settings

from agentops.llm import client as llm_client
from agentops.llm import ratelimit


@pytest.fixture(autouse=True)
def fresh_buckets():
    # Buckets live in Redis across tests; a 429 in one test must not pause the next.
    ratelimit.reset_all()
    yield
    ratelimit.reset_all()


@pytest.fixture
def sim(settings):
    """The process-wide in-process simulator, cleared, with no env key in the way."""
    settings.ANTHROPIC_API_KEY = ""
    settings.ANTHROPIC_BASE_URL = ""
    transport = llm_client.simulator_transport()
    transport.clear()
    yield transport
    transport.clear()


@pytest.fixture
def redis_client():
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    client = ratelimit.redis_client()
    yield client
    for key in client.scan_iter(ratelimit.KEY_PREFIX + "test-*"):
        client.delete(key)
