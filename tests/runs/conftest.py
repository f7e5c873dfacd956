"""Fixtures for the run engine: agents with test tools, the in-process simulator, and a
synchronous, bounded drain of queued steps (no worker needed)."""

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agentops.agents.services import agent_create, allowlist_entry_add, webhook_tool_create
from agentops.agents.tools import ToolOutcome, ToolSpec, registry
from agentops.llm.catalogue import DEFAULT_MODEL
from agentops.runs import services

CALLS = []


def _weather(context, tool_input):
    CALLS.append(("get_weather", tool_input))
    return ToolOutcome(content=f"Sunny and 21 °C in {tool_input['city']}.")


def _stock(context, tool_input):
    CALLS.append(("get_stock", tool_input))
    return ToolOutcome(content=f"{tool_input['sku']}: 42 in stock.")


TEST_TOOLS = [
    ToolSpec(
        name="get_weather",
        description="Current weather for a city.",
        input_schema={
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 1}},
            "required": ["city"],
        },
        run=_weather,
    ),
    ToolSpec(
        name="get_stock",
        description="Units in stock for a product SKU.",
        input_schema={
            "type": "object",
            "properties": {"sku": {"type": "string", "minLength": 1}},
            "required": ["sku"],
        },
        run=_stock,
    ),
]
for _spec in TEST_TOOLS:
    if registry.get(_spec.name) is None:
        registry.register(_spec)


@pytest.fixture(autouse=True)
def _generous_rate_limits(generous_rate_limits):
    pass


@pytest.fixture
def tool_calls():
    CALLS.clear()
    return CALLS


@pytest.fixture
def make_agent(team_a, alice):
    counter = {"n": 0}

    def make(*, tools=(), max_tokens=1024, name=None, team=None, actor=None, **extra):
        counter["n"] += 1
        return agent_create(
            team=team or team_a,
            actor=actor or alice,
            name=name or f"Agent {counter['n']}",
            model=DEFAULT_MODEL,
            system_prompt="You are a helpful assistant.",
            max_tokens=max_tokens,
            tools=list(tools),
            **extra,
        )

    return make


@pytest.fixture
def drain():
    """Execute a run's queued steps in this process, deterministically and bounded."""

    def run_it(run, max_steps=100):
        return services.run_execute_inline(run=run, max_steps=max_steps)

    return run_it


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received_steps.append(self.headers.get("X-Agentops-Step"))
        status, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_tool(team_a, alice):
    """make(name, status=200): a team webhook tool served by a local HTTP server answering
    `status`; `.received_steps` lists the X-Agentops-Step header of each call. Unlike the
    test-only built-ins, a worker subprocess knows these tools too (they are rows)."""
    servers = []
    allowlist_entry_add(team=team_a, actor=alice, host="127.0.0.1", allow_private=True)

    def make(name, status=200, body=b'{"result": "order 12 shipped"}'):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _HookHandler)
        server.received_steps = []
        server.answer = (status, body)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        tool = webhook_tool_create(
            team=team_a,
            actor=alice,
            name=name,
            description=f"Look up {name.replace('_', ' ')} by its number.",
            input_schema={
                "type": "object",
                "properties": {"number": {"type": "string"}},
                "required": ["number"],
            },
            url=f"http://127.0.0.1:{server.server_port}/hook",
            secret="webhook-secret-for-tests",
            timeout_s=5,
        )
        tool.received_steps = server.received_steps
        return tool

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def failing_webhook(webhook_tool):
    return webhook_tool("lookup_order", status=500, body=b'{"error": "order service is down"}')


@pytest.fixture
def private_queue():
    """A Celery queue of this test's own: the worker it starts consumes only this queue, and
    this process sends there too, so no other worker on the same Redis takes its steps."""
    from agentops.celery import app

    queue = f"agentops-test-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = previous
