"""The tool registry, what an agent version exposes, and execute_tool's error results."""

import json

import pytest

from agentops.agents import tools as tools_module
from agentops.agents.models import WebhookTool
from agentops.agents.services import webhook_tool_create
from agentops.agents.tools import (
    ToolOutcome,
    ToolRegistry,
    ToolSpec,
    execute_tool,
    registry,
    tool_permission,
    tools_for_version,
)

OBJECT_SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


def _noop(context, tool_input):
    return ToolOutcome("ok")


def test_http_fetch_is_a_built_in_with_a_valid_schema():
    spec = registry.get("http_fetch")
    assert spec is not None and spec.builtin
    assert spec.input_schema["required"] == ["url"]


def test_register_refuses_bad_names_schemas_and_duplicates():
    fresh = ToolRegistry()
    fresh.register(ToolSpec("lookup", "Looks up.", OBJECT_SCHEMA, _noop))
    with pytest.raises(ValueError, match="already registered"):
        fresh.register(ToolSpec("lookup", "Again.", OBJECT_SCHEMA, _noop))
    with pytest.raises(ValueError, match="invalid tool name"):
        fresh.register(ToolSpec("has space", "x", OBJECT_SCHEMA, _noop))
    with pytest.raises(ValueError, match="Not a valid JSON Schema"):
        fresh.register(ToolSpec("bad", "x", {"type": "object", "properties": 3}, _noop))
    with pytest.raises(ValueError, match='"type": "object"'):
        fresh.register(ToolSpec("scalar", "x", {"type": "string"}, _noop))
    assert [spec.name for spec in fresh.all()] == ["lookup"]


@pytest.fixture
def order_tool(team_a, alice, allow_local, local_server):
    return webhook_tool_create(
        team=team_a,
        actor=alice,
        name="order_status",
        description="Looks up an order.",
        input_schema={
            "type": "object",
            "properties": {"order_id": {"type": "string", "pattern": "^[0-9]+$"}},
            "required": ["order_id"],
            "additionalProperties": False,
        },
        url=f"{local_server.base_url}/webhook",
        secret="test-webhook-secret-0123456789",
        timeout_s=5,
    )


def test_tools_for_version_lists_built_in_and_webhook_tools(make_agent, order_tool):
    agent = make_agent(
        tools=[
            {"name": "http_fetch", "permission": "allow"},
            {"name": "order_status", "permission": "ask"},
        ]
    )
    params = tools_for_version(agent.current_version)
    assert [p["name"] for p in params] == ["http_fetch", "order_status"]
    assert params[1] == {
        "name": "order_status",
        "description": "Looks up an order.",
        "input_schema": order_tool.input_schema,
    }
    json.dumps(params)  # what the Messages API receives must be plain JSON


def test_a_deleted_webhook_tool_drops_out_of_old_versions(make_agent, order_tool):
    agent = make_agent(tools=[{"name": "order_status", "permission": "allow"}])
    WebhookTool.objects.filter(pk=order_tool.pk).delete()
    assert tools_for_version(agent.current_version) == []
    outcome = execute_tool(
        team=agent.team,
        version=agent.current_version,
        name="order_status",
        input={"order_id": "1"},
    )
    assert outcome == ToolOutcome("There is no tool named 'order_status'.", is_error=True)


def test_tool_permission_reads_the_version(make_agent):
    ask = make_agent("Asker", tools=[{"name": "http_fetch", "permission": "ask"}])
    allow = make_agent("Allower", tools=[{"name": "http_fetch", "permission": "allow"}])
    assert tool_permission(ask.current_version, "http_fetch") == "ask"
    assert tool_permission(allow.current_version, "http_fetch") == "allow"
    # Nothing to approve for a tool the version does not enable: execute_tool refuses it.
    assert tool_permission(allow.current_version, "order_status") == "allow"


@pytest.mark.parametrize(
    ("tool_input", "message"),
    [
        ({}, "(input): 'url' is a required property"),
        ({"url": 42}, "url: 42 is not of type 'string'"),
        ({"url": "http://x/", "method": "POST"}, "Additional properties are not allowed"),
        ("http://x/", "the input must be an object"),
    ],
)
def test_invalid_tool_input_is_an_error_result_and_nothing_runs(
    make_agent, local_server, allow_local, tool_input, message
):
    agent = make_agent(tools=[{"name": "http_fetch", "permission": "allow"}])
    outcome = execute_tool(
        team=agent.team, version=agent.current_version, name="http_fetch", input=tool_input
    )
    assert outcome.is_error
    assert outcome.content.startswith("Invalid input for http_fetch")
    assert message in outcome.content
    assert local_server.requests == []


def test_invalid_webhook_input_never_reaches_the_webhook(make_agent, order_tool, local_server):
    agent = make_agent(tools=[{"name": "order_status", "permission": "allow"}])
    outcome = execute_tool(
        team=agent.team,
        version=agent.current_version,
        name="order_status",
        input={"order_id": "12; drop table"},
    )
    assert outcome.is_error and "does not match '^[0-9]+$'" in outcome.content
    assert local_server.requests == []


def test_a_tool_the_version_does_not_enable_is_refused(make_agent, local_server, allow_local):
    agent = make_agent(tools=[])
    outcome = execute_tool(
        team=agent.team,
        version=agent.current_version,
        name="http_fetch",
        input={"url": f"{local_server.base_url}/hello"},
    )
    assert outcome == ToolOutcome("The tool 'http_fetch' is not enabled for this agent.", True)
    assert local_server.requests == []


def test_an_unknown_tool_is_an_error_result(team_a):
    outcome = execute_tool(team=team_a, version=None, name="teleport", input={})
    assert outcome == ToolOutcome("There is no tool named 'teleport'.", is_error=True)


def test_a_crashing_tool_becomes_an_error_result(team_a, monkeypatch):
    def explode(context, tool_input):
        raise RuntimeError("boom")

    spec = ToolSpec("explode", "Crashes.", OBJECT_SCHEMA, explode)
    monkeypatch.setitem(registry._specs, "explode", spec)
    outcome = execute_tool(team=team_a, version=None, name="explode", input={"q": "x"})
    assert outcome == ToolOutcome("The tool explode failed: RuntimeError.", is_error=True)


def test_very_long_results_are_cut(team_a, monkeypatch):
    spec = ToolSpec("chatty", "Talks.", OBJECT_SCHEMA, lambda c, i: ToolOutcome("y" * 200_000))
    monkeypatch.setitem(registry._specs, "chatty", spec)
    outcome = execute_tool(team=team_a, version=None, name="chatty", input={"q": "x"})
    limit = tools_module.MAX_RESULT_CHARS
    assert outcome.content.startswith("y" * limit)
    assert outcome.content.endswith(f"[truncated at {limit} characters]")
