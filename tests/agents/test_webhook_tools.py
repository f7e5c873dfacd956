"""Webhook tools: signed POSTs to the team's URL, failures as error results, and their pages."""

import json

import pytest
from django.urls import reverse

from agentops.agents.models import HostAllowlistEntry, WebhookTool
from agentops.agents.services import webhook_tool_create
from agentops.agents.tools import ToolOutcome, execute_tool
from agentops.llm.crypto import decrypt
from agentops.teams.models import AuditEvent, Role, Team

from .helpers import WEBHOOK_SECRET

SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"],
}


@pytest.fixture
def make_webhook(team_a, alice, allow_local, local_server):
    def make(path="/webhook", name="order_status", secret=WEBHOOK_SECRET, timeout_s=5):
        return webhook_tool_create(
            team=team_a,
            actor=alice,
            name=name,
            description="Looks up an order.",
            input_schema=SCHEMA,
            url=f"{local_server.base_url}{path}",
            secret=secret,
            timeout_s=timeout_s,
        )

    return make


def call(team, name="order_status", step_id=None, **tool_input):
    tool_input = tool_input or {"order_id": "1234"}
    return execute_tool(team=team, version=None, name=name, input=tool_input, step_id=step_id)


def test_a_webhook_gets_the_signed_input_and_its_answer_is_the_result(
    team_a, make_webhook, local_server
):
    make_webhook()
    outcome = call(team_a, step_id=77)
    assert outcome == ToolOutcome(json.dumps({"order": "1234", "status": "shipped"}))
    method, path, headers, body = local_server.requests[0]
    assert (method, path) == ("POST", "/webhook")
    assert json.loads(body) == {"order_id": "1234"}
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Agentops-Tool"] == "order_status"
    assert headers["X-Agentops-Step"] == "77"
    assert headers["X-Agentops-Signature"].startswith("sha256=")


def test_a_wrong_secret_fails_the_servers_signature_check(team_a, make_webhook):
    make_webhook(secret="not-the-secret-the-server-knows")
    outcome = call(team_a)
    assert outcome.is_error
    assert outcome.content == "webhook tool order_status answered HTTP 401: bad signature"


def test_a_failing_webhook_is_an_error_result(team_a, make_webhook):
    make_webhook(path="/webhook-500")
    outcome = call(team_a)
    assert outcome == ToolOutcome(
        "webhook tool order_status answered HTTP 500: the order service is down", is_error=True
    )


def test_a_webhook_that_does_not_answer_in_time_is_an_error_result(team_a, make_webhook):
    make_webhook(path="/webhook-slow", timeout_s=1)
    outcome = call(team_a)
    assert outcome == ToolOutcome(
        "webhook tool order_status failed: timed out after 1 s.", is_error=True
    )


def test_a_webhook_whose_host_left_the_allowlist_is_refused(team_a, make_webhook, local_server):
    make_webhook()
    HostAllowlistEntry.objects.filter(team=team_a).delete()
    outcome = call(team_a)
    assert outcome.is_error and "not on the team's allowlist" in outcome.content
    assert local_server.requests == []


def test_a_webhook_to_a_private_address_needs_allow_private(team_a, make_webhook, local_server):
    make_webhook()
    HostAllowlistEntry.objects.filter(team=team_a).update(allow_private=False)
    outcome = call(team_a)
    assert outcome.is_error and "non-public address" in outcome.content
    assert local_server.requests == []


def test_webhook_redirects_are_not_followed(team_a, make_webhook, local_server):
    make_webhook(path="/webhook-redirect")
    outcome = call(team_a)
    assert outcome == ToolOutcome(
        "webhook tool order_status failed: the server answered with a redirect (HTTP 307).", True
    )
    assert [r[1] for r in local_server.requests] == ["/webhook-redirect"]


def test_an_oversized_webhook_answer_is_an_error(team_a, make_webhook, settings):
    settings.AGENTOPS_TOOL_MAX_RESPONSE_BYTES = 2048
    make_webhook(path="/webhook-big")
    outcome = call(team_a)
    assert outcome == ToolOutcome(
        "webhook tool order_status answered with more than 2048 bytes; the result was discarded.",
        is_error=True,
    )


def test_the_secret_is_encrypted_at_rest(team_a, make_webhook):
    tool = make_webhook()
    assert WEBHOOK_SECRET not in tool.secret_encrypted
    assert decrypt(tool.secret_encrypted) == WEBHOOK_SECRET
    event = AuditEvent.objects.get(verb="webhook_tool.create")
    assert WEBHOOK_SECRET not in json.dumps(event.after)


# --- pages --------------------------------------------------------------------------------


def _form(local_server, **overrides):
    data = {
        "name": "order_status",
        "description": "Looks up an order.",
        "input_schema": json.dumps(SCHEMA),
        "url": f"{local_server.base_url}/webhook",
        "secret": WEBHOOK_SECRET,
        "timeout_s": "5",
    }
    data.update(overrides)
    return data


def test_alice_adds_a_webhook_tool(alice_client, team_a, allow_local, local_server):
    response = alice_client.post(reverse("agents:webhook-create"), _form(local_server))
    assert response.status_code == 302
    tool = WebhookTool.objects.get(team=team_a)
    assert tool.input_schema == SCHEMA and tool.timeout_s == 5
    assert decrypt(tool.secret_encrypted) == WEBHOOK_SECRET
    page = alice_client.get(reverse("agents:tools")).content.decode()
    assert "order_status" in page and WEBHOOK_SECRET not in page


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"input_schema": "{not json"}, "input_schema", "This is not valid JSON"),
        (
            {"input_schema": '{"type": "object", "properties": {"q": {"type": "nonsense"}}}'},
            "input_schema",
            "Not a valid JSON Schema at properties/q/type",
        ),
        ({"input_schema": '{"type": "string"}'}, "input_schema", '"type": "object"'),
        ({"input_schema": "[1, 2]"}, "input_schema", "The schema must be a JSON object."),
        ({"name": "http_fetch"}, "name", "http_fetch is the name of a built-in tool."),
        ({"name": "memory_search"}, "name", "is the name of a built-in tool"),
        ({"name": "has spaces"}, "name", "Use only letters, digits, _ and -"),
        (
            {"url": "http://10.9.9.9/hook"},
            "url",
            "The host 10.9.9.9 is not on the team's allowlist",
        ),
        ({"url": "ftp://127.0.0.1/hook"}, "url", "Use an http or https URL."),
        ({"secret": "short"}, "secret", "at least 16 characters"),
        ({"secret": ""}, "secret", "This field is required."),
        ({"timeout_s": "31"}, "timeout_s", "less than or equal to 30"),
        ({"timeout_s": "0"}, "timeout_s", "greater than or equal to 1"),
    ],
)
def test_bad_webhook_tools_are_field_errors(
    alice_client, allow_local, local_server, overrides, field, message
):
    response = alice_client.post(reverse("agents:webhook-create"), _form(local_server, **overrides))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert any(message in e for e in errors.get(field, [])), errors
    assert not WebhookTool.objects.exists()


def test_editing_keeps_the_secret_unless_a_new_one_is_given(
    alice_client, make_webhook, local_server
):
    tool = make_webhook()
    url = reverse("agents:webhook-edit", args=[tool.pk])
    response = alice_client.post(url, _form(local_server, secret="", description="Changed."))
    assert response.status_code == 302
    tool.refresh_from_db()
    assert tool.description == "Changed."
    assert decrypt(tool.secret_encrypted) == WEBHOOK_SECRET
    alice_client.post(
        url, _form(local_server, secret="a-brand-new-secret-value", description="Changed.")
    )
    tool.refresh_from_db()
    assert decrypt(tool.secret_encrypted) == "a-brand-new-secret-value"
    event = AuditEvent.objects.filter(verb="webhook_tool.update").first()
    assert event.after == {"secret": "changed"}


def test_a_webhook_in_use_cannot_be_deleted_or_renamed(
    alice_client, make_webhook, make_agent, local_server
):
    tool = make_webhook()
    make_agent("Support", tools=[{"name": "order_status", "permission": "ask"}])
    response = alice_client.post(reverse("agents:webhook-delete", args=[tool.pk]), follow=True)
    assert b"This tool is used by Support" in response.content
    rename = alice_client.post(
        reverse("agents:webhook-edit", args=[tool.pk]), _form(local_server, name="renamed")
    )
    assert rename.status_code == 400
    assert "Renaming would break agents" in rename.context["form"].errors["name"][0]
    assert WebhookTool.objects.get().name == "order_status"


def test_an_unused_webhook_is_deleted(alice_client, make_webhook):
    tool = make_webhook()
    alice_client.post(reverse("agents:webhook-delete", args=[tool.pk]))
    assert not WebhookTool.objects.exists()
    assert AuditEvent.objects.filter(verb="webhook_tool.delete").exists()


def test_agent_form_offers_the_teams_webhook_tools(alice_client, make_webhook, team_a):
    make_webhook()
    response = alice_client.get(reverse("agents:create"))
    assert b'name="tool_order_status"' in response.content


def test_bob_cannot_manage_webhook_tools(bob_client, make_webhook, local_server):
    tool = make_webhook()
    assert bob_client.get(reverse("agents:tools")).status_code == 200
    assert bob_client.get(reverse("agents:webhook-create")).status_code == 403
    assert bob_client.post(reverse("agents:webhook-create"), _form(local_server)).status_code == 403
    assert bob_client.get(reverse("agents:webhook-edit", args=[tool.pk])).status_code == 403
    assert bob_client.post(reverse("agents:webhook-delete", args=[tool.pk])).status_code == 403
    assert WebhookTool.objects.count() == 1


def test_charlie_cannot_reach_team_a_webhook_tools(charlie_client, make_webhook, local_server):
    tool = make_webhook()
    assert b"order_status" not in charlie_client.get(reverse("agents:tools")).content
    assert charlie_client.get(reverse("agents:webhook-edit", args=[tool.pk])).status_code == 404
    edit = charlie_client.post(
        reverse("agents:webhook-edit", args=[tool.pk]), _form(local_server, description="x")
    )
    assert edit.status_code == 404
    assert charlie_client.post(reverse("agents:webhook-delete", args=[tool.pk])).status_code == 404
    assert WebhookTool.objects.get().description == "Looks up an order."
    # Nor can team B's agents call it.
    outcome = call(Team.objects.get(slug="team-b"))
    assert outcome == ToolOutcome("There is no tool named 'order_status'.", is_error=True)


def test_an_editor_manages_webhooks_but_not_the_allowlist(
    member_of_team_a, login, allow_local, local_server
):
    editor = login(member_of_team_a(Role.EDITOR))
    assert editor.post(reverse("agents:webhook-create"), _form(local_server)).status_code == 302
    add = editor.post(reverse("agents:allowlist-add"), {"host": "example.com"})
    assert add.status_code == 403


def test_an_admin_adds_the_tool_s_host_to_the_allowlist_from_the_tool_form(
    alice_client, team_a, local_server
):
    # Without the tick the form says how, and keeps what was typed.
    response = alice_client.post(reverse("agents:webhook-create"), _form(local_server))
    assert response.status_code == 400
    assert "Also add this URL" in response.text and "Looks up an order." in response.text
    assert not HostAllowlistEntry.objects.exists()
    response = alice_client.post(
        reverse("agents:webhook-create"), _form(local_server, allow_host="on")
    )
    assert response.status_code == 302
    entry = HostAllowlistEntry.objects.get(team=team_a)
    assert entry.host == "127.0.0.1" and entry.note == "tool order_status"
    assert WebhookTool.objects.get(team=team_a).url.startswith(local_server.base_url)
    assert AuditEvent.objects.filter(verb="allowlist.add", actor__username="alice").exists()


def test_an_editor_is_not_offered_the_allowlist_and_cannot_slip_it_in(
    member_of_team_a, login, local_server
):
    editor = login(member_of_team_a(Role.EDITOR))
    page = editor.get(reverse("agents:webhook-create")).text
    assert "Also add this URL" not in page
    response = editor.post(reverse("agents:webhook-create"), _form(local_server, allow_host="on"))
    assert response.status_code == 400 and "an admin adds it under Tools" in response.text
    assert not HostAllowlistEntry.objects.exists() and not WebhookTool.objects.exists()
