import pytest
from django.urls import reverse

from agentops.agents.models import Agent, AgentVersion
from agentops.teams.models import AuditEvent, Role

from .helpers import agent_form_data


def test_alice_creates_an_agent_with_a_first_version(alice_client, alice, team_a):
    data = agent_form_data(
        name="Researcher",
        description="Finds things",
        system_prompt="Be precise.",
        temperature="0.2",
        tool_http_fetch="on",
        permission_http_fetch="allow",
    )
    response = alice_client.post(reverse("agents:create"), data)
    agent = Agent.objects.get(team=team_a, name="Researcher")
    assert response.status_code == 302
    assert response["Location"] == reverse("agents:detail", args=[agent.pk])
    version = agent.current_version
    assert version.number == 1
    assert version.system_prompt == "Be precise."
    assert version.temperature == 0.2
    assert version.tools == [{"name": "http_fetch", "permission": "allow"}]
    assert version.description == "Finds things" and version.created_by == alice
    event = AuditEvent.objects.get(verb="agent.create")
    assert event.team == team_a and event.actor == alice and event.after["version"] == 1


def test_create_page_lists_models_and_tools(alice_client):
    response = alice_client.get(reverse("agents:create"))
    assert response.status_code == 200
    assert b"claude-sonnet-4-6" in response.content
    assert b'name="tool_http_fetch"' in response.content
    assert b'name="permission_http_fetch"' in response.content


def test_every_changed_save_is_a_new_version_and_an_unchanged_one_is_not(alice_client, make_agent):
    agent = make_agent(system_prompt="First prompt.")
    url = reverse("agents:edit", args=[agent.pk])
    response = alice_client.post(url, agent_form_data(system_prompt="Second prompt."))
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.current_version.number == 2
    assert agent.current_version.system_prompt == "Second prompt."
    assert agent.versions.get(number=1).system_prompt == "First prompt."

    response = alice_client.post(url, agent_form_data(system_prompt="Second prompt."), follow=True)
    assert b"Nothing changed, so no new version was saved." in response.content
    assert agent.versions.count() == 2
    assert AuditEvent.objects.filter(verb="agent.update").count() == 1

    alice_client.post(
        url,
        agent_form_data(
            system_prompt="Second prompt.", tool_http_fetch="on", permission_http_fetch="ask"
        ),
    )
    agent.refresh_from_db()
    assert agent.current_version.number == 3
    assert agent.current_version.tools == [{"name": "http_fetch", "permission": "ask"}]
    event = AuditEvent.objects.filter(verb="agent.update").first()
    assert event.before == {"version": 2, "tools": []}
    assert event.after == {"version": 3, "tools": [{"name": "http_fetch", "permission": "ask"}]}


def test_renaming_is_a_new_version_too(alice_client, make_agent):
    agent = make_agent(name="Old name")
    alice_client.post(reverse("agents:edit", args=[agent.pk]), agent_form_data(name="New name"))
    agent.refresh_from_db()
    assert agent.name == "New name"
    assert [v.name for v in agent.versions.order_by("number")] == ["Old name", "New name"]


def test_edit_form_starts_from_the_current_version(alice_client, make_agent):
    agent = make_agent(
        system_prompt="Keep me.", tools=[{"name": "http_fetch", "permission": "ask"}]
    )
    response = alice_client.get(reverse("agents:edit", args=[agent.pk]))
    assert response.status_code == 200
    assert b"Keep me." in response.content
    form = response.context["form"]
    assert form["tool_http_fetch"].value() is True
    assert form["permission_http_fetch"].value() == "ask"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"system_prompt": ""}, "system_prompt", "The system prompt cannot be empty."),
        ({"model": "gpt-9"}, "model", "Unknown model gpt-9"),
        ({"max_tokens": "0"}, "max_tokens", "Max tokens must be between 1 and 64,000."),
        ({"max_tokens": "64001"}, "max_tokens", "Max tokens must be between 1 and 64,000."),
        ({"temperature": "1.5"}, "temperature", "less than or equal to 1"),
        ({"thinking_budget": "512"}, "thinking_budget", "greater than or equal to 1024"),
        (
            {"thinking_budget": "2048", "max_tokens": "2048"},
            "thinking_budget",
            "The thinking budget must be below max tokens.",
        ),
        (
            {"thinking_budget": "2048", "max_tokens": "4096", "temperature": "0.5"},
            "temperature",
            "Extended thinking does not work with a custom temperature",
        ),
        ({"name": ""}, "name", "This field is required."),
    ],
)
def test_bad_input_is_a_field_error(alice_client, overrides, field, message):
    response = alice_client.post(reverse("agents:create"), agent_form_data(**overrides))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert any(message in e for e in errors[field]), errors
    assert message.encode() in response.content
    assert not Agent.objects.exists()


def test_a_duplicate_name_is_a_field_error(alice_client, make_agent):
    make_agent(name="Helper")
    response = alice_client.post(reverse("agents:create"), agent_form_data(name="helper"))
    assert response.status_code == 400
    assert "already has an agent named" in response.context["form"].errors["name"][0]
    assert Agent.objects.count() == 1


def test_a_bad_edit_keeps_the_current_version(alice_client, make_agent):
    agent = make_agent()
    response = alice_client.post(
        reverse("agents:edit", args=[agent.pk]), agent_form_data(system_prompt="  ")
    )
    assert response.status_code == 400
    assert agent.versions.count() == 1


def test_detail_shows_configuration_history_and_a_diff(alice_client, alice, make_agent):
    agent = make_agent(system_prompt="Line one.\nLine two.\n<b>bold</b>")
    alice_client.post(
        reverse("agents:edit", args=[agent.pk]),
        agent_form_data(system_prompt="Line one.\nLine 2.\n<b>bold</b>", max_tokens="2048"),
    )
    response = alice_client.get(reverse("agents:detail", args=[agent.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Current configuration (v2)" in content
    assert reverse("agents:version", args=[agent.pk, 1]) in content
    # By default the latest two versions are compared.
    assert '<span class="diff-del">-Line two.</span>' in content
    assert '<span class="diff-add">+Line 2.</span>' in content
    assert '<span class="diff-add">+2048</span>' in content
    # Prompt text is escaped everywhere, never rendered as HTML.
    assert "&lt;b&gt;bold&lt;/b&gt;" in content and "<b>bold</b>" not in content


def test_any_two_versions_can_be_compared_and_htmx_gets_the_fragment(alice_client, make_agent):
    agent = make_agent(system_prompt="v1")
    url = reverse("agents:edit", args=[agent.pk])
    alice_client.post(url, agent_form_data(system_prompt="v2"))
    alice_client.post(url, agent_form_data(system_prompt="v3"))
    detail = reverse("agents:detail", args=[agent.pk])
    response = alice_client.get(detail, {"a": 3, "b": 1}, headers={"HX-Request": "true"})
    content = response.content.decode()
    assert "<h1>" not in content  # only the compare fragment
    assert '<span class="diff-del">-v3</span>' in content
    assert '<span class="diff-add">+v1</span>' in content
    same = alice_client.get(detail, {"a": 2, "b": 2}).content.decode()
    assert "Choose two different versions" in same
    bad = alice_client.get(detail, {"a": 2, "b": 99}).content.decode()
    assert "Choose two of this agent's versions." in bad


def test_a_version_page_shows_that_version(alice_client, make_agent):
    agent = make_agent(system_prompt="The original.")
    alice_client.post(reverse("agents:edit", args=[agent.pk]), agent_form_data(system_prompt="X"))
    response = alice_client.get(reverse("agents:version", args=[agent.pk, 1]))
    assert response.status_code == 200
    assert b"The original." in response.content
    missing = alice_client.get(reverse("agents:version", args=[agent.pk, 7]))
    assert missing.status_code == 404


def test_archive_hides_keeps_and_unarchive_restores(alice_client, make_agent):
    agent = make_agent(name="Retiring")
    response = alice_client.post(reverse("agents:archive", args=[agent.pk]), follow=True)
    assert b"Archived Retiring. Its versions and runs are kept." in response.content
    agent.refresh_from_db()
    assert agent.is_archived and agent.versions.count() == 1
    active = alice_client.get(reverse("agents:list")).content.decode()
    assert "Retiring" not in active and "1 archived agent" in active
    archived = alice_client.get(reverse("agents:list"), {"status": "archived"})
    assert b"Retiring" in archived.content
    edit = alice_client.get(reverse("agents:edit", args=[agent.pk]), follow=True)
    assert b"An archived agent cannot be edited" in edit.content
    alice_client.post(reverse("agents:unarchive", args=[agent.pk]))
    agent.refresh_from_db()
    assert not agent.is_archived
    verbs = list(AuditEvent.objects.order_by("id").values_list("verb", flat=True))
    assert verbs == ["agent.create", "agent.archive", "agent.unarchive"]


def test_archive_needs_post(alice_client, make_agent):
    agent = make_agent()
    assert alice_client.get(reverse("agents:archive", args=[agent.pk])).status_code == 405


def test_list_filters_by_text_and_paginates(alice_client, make_agent, settings):
    settings.PAGE_SIZE = 2
    make_agent(name="Alpha", system_prompt="Mentions kangaroos.")
    make_agent(name="Beta")
    make_agent(name="Gamma", description="About kangaroos")
    found = alice_client.get(reverse("agents:list"), {"q": "kangaroo"}).content.decode()
    assert "Alpha" in found and "Gamma" in found and "Beta" not in found
    first = alice_client.get(reverse("agents:list")).content.decode()
    assert "Page 1 of 2" in first
    second = alice_client.get(reverse("agents:list"), {"page": 2}).content.decode()
    assert "Gamma" in second and "Alpha" not in second


def test_list_empty_states(alice_client, make_agent):
    empty = alice_client.get(reverse("agents:list")).content.decode()
    assert "No agents yet." in empty and "Create the first agent" in empty
    make_agent()
    nothing = alice_client.get(reverse("agents:list"), {"q": "zzz"}).content.decode()
    assert "No agents match these filters." in nothing


def test_htmx_list_request_gets_the_fragment(alice_client, make_agent):
    make_agent(name="Only")
    response = alice_client.get(reverse("agents:list"), headers={"HX-Request": "true"})
    assert b'id="agents"' in response.content and b"<h1>" not in response.content


# --- roles --------------------------------------------------------------------------------


def test_bob_the_reviewer_can_view_but_not_change(bob_client, make_agent):
    agent = make_agent()
    assert bob_client.get(reverse("agents:list")).status_code == 200
    assert bob_client.get(reverse("agents:detail", args=[agent.pk])).status_code == 200
    assert bob_client.get(reverse("agents:version", args=[agent.pk, 1])).status_code == 200
    assert bob_client.get(reverse("agents:create")).status_code == 403
    assert bob_client.post(reverse("agents:create"), agent_form_data()).status_code == 403
    edit = reverse("agents:edit", args=[agent.pk])
    assert bob_client.get(edit).status_code == 403
    assert bob_client.post(edit, agent_form_data(system_prompt="Hijack")).status_code == 403
    assert bob_client.post(reverse("agents:archive", args=[agent.pk])).status_code == 403
    assert bob_client.post(reverse("agents:unarchive", args=[agent.pk])).status_code == 403
    assert AgentVersion.objects.count() == 1
    assert b"Edit</a>" not in bob_client.get(reverse("agents:detail", args=[agent.pk])).content


def test_a_viewer_can_read_and_an_editor_can_create(member_of_team_a, login):
    viewer = login(member_of_team_a(Role.VIEWER))
    assert viewer.get(reverse("agents:list")).status_code == 200
    assert viewer.post(reverse("agents:create"), agent_form_data()).status_code == 403
    editor = login(member_of_team_a(Role.EDITOR))
    assert editor.post(reverse("agents:create"), agent_form_data()).status_code == 302
    assert Agent.objects.count() == 1
    # A viewer's agent page says why there is no run form; an editor's has it.
    page = reverse("agents:detail", args=[Agent.objects.get().pk])
    read_only = viewer.get(page).text
    assert "editors, admins and owners run it" in read_only and "Run this agent" not in read_only
    runnable = editor.get(page).text
    assert "Run this agent" in runnable and "editors, admins and owners run it" not in runnable


def test_charlie_cannot_see_team_a_agents(charlie_client, make_agent):
    agent = make_agent(name="Secret agent")
    assert b"Secret agent" not in charlie_client.get(reverse("agents:list")).content
    for name, args in [
        ("agents:detail", [agent.pk]),
        ("agents:edit", [agent.pk]),
        ("agents:version", [agent.pk, 1]),
    ]:
        assert charlie_client.get(reverse(name, args=args)).status_code == 404
    edit = charlie_client.post(reverse("agents:edit", args=[agent.pk]), agent_form_data())
    assert edit.status_code == 404
    assert charlie_client.post(reverse("agents:archive", args=[agent.pk])).status_code == 404
    agent.refresh_from_db()
    assert not agent.is_archived and agent.versions.count() == 1


def test_anonymous_is_sent_to_log_in(client, make_agent):
    response = client.get(reverse("agents:list"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_demo_seeding_is_idempotent(team_a, alice, bob):
    from agentops.agents.demo import seed_demo_data

    seed_demo_data(team=team_a, owner=alice, reviewer=bob)
    seed_demo_data(team=team_a, owner=alice, reviewer=bob)
    agents = Agent.objects.filter(team=team_a).order_by("name")
    assert [a.name for a in agents] == ["Research assistant", "Support writer"]
    assert all(a.versions.count() == 1 for a in agents)
    assert agents[0].current_version.tools == [{"name": "http_fetch", "permission": "allow"}]


def test_a_model_gone_from_the_catalogue_is_shown_and_refused(alice_client, make_agent):
    agent = make_agent(model="claude-2.1")
    url = reverse("agents:edit", args=[agent.pk])
    page = alice_client.get(url).content.decode()
    assert '<option value="claude-2.1" selected>claude-2.1 (not in the catalogue)</option>' in page
    response = alice_client.post(url, agent_form_data(model="claude-2.1", system_prompt="New"))
    assert response.status_code == 400
    assert response.context["form"].errors["model"] == [
        "Unknown model claude-2.1: choose a model from the catalogue."
    ]
    assert agent.versions.count() == 1


def test_the_service_refuses_bad_tool_entries(team_a, alice):
    from django.core.exceptions import ValidationError

    from agentops.agents.services import agent_create

    base = {"name": "X", "model": "claude-haiku-4-5", "system_prompt": "x", "max_tokens": 10}
    with pytest.raises(ValidationError, match="allow or ask"):
        agent_create(
            team=team_a, actor=alice, tools=[{"name": "http_fetch", "permission": "yes"}], **base
        )
    with pytest.raises(ValidationError, match="enabled once"):
        agent_create(
            team=team_a,
            actor=alice,
            tools=[{"name": "http_fetch", "permission": "ask"}] * 2,
            **base,
        )
    assert not Agent.objects.exists()


def test_version_history_is_paginated(alice_client, make_agent, settings):
    settings.PAGE_SIZE = 2
    agent = make_agent(system_prompt="p1")
    for n in range(2, 6):
        alice_client.post(
            reverse("agents:edit", args=[agent.pk]), agent_form_data(system_prompt=f"p{n}")
        )
    detail = reverse("agents:detail", args=[agent.pk])
    first = alice_client.get(detail).content.decode()
    assert "version 5 of 5" in first and "Page 1 of 3" in first
    assert reverse("agents:version", args=[agent.pk, 5]) in first
    assert reverse("agents:version", args=[agent.pk, 3]) not in first
    last = alice_client.get(detail, {"page": 3}).content.decode()
    assert reverse("agents:version", args=[agent.pk, 1]) in last
    # The compare form still offers every version.
    assert '<option value="1">v1</option>' in last
