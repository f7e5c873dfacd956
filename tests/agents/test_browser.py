import pytest

from agentops.agents.models import Agent


@pytest.mark.browser
def test_create_edit_and_compare_an_agent_in_the_browser(browser_login, alice):
    from playwright.sync_api import expect

    page = browser_login(alice)
    page.goto("/agents/")
    page.get_by_role("link", name="Create the first agent").click()
    page.fill("#id_name", "Browser agent")
    page.select_option("#id_model", "claude-haiku-4-5")
    page.fill("#id_system_prompt", "Say hello.")
    page.fill("#id_max_tokens", "2048")
    page.check("#id_tool_http_fetch")
    page.select_option("#id_permission_http_fetch", "ask")
    page.get_by_role("button", name="Create agent").click()
    expect(page.locator("h1")).to_contain_text("Browser agent")
    expect(page.locator(".config")).to_contain_text("always ask")

    page.get_by_role("link", name="Edit").click()
    page.fill("#id_system_prompt", "Say hello politely.")
    page.get_by_role("button", name="Save new version").click()
    expect(page.locator(".messages")).to_contain_text("Saved version 2.")
    expect(page.locator("#compare .diff-add")).to_contain_text("+Say hello politely.")

    # The compare form swaps the diff in place through htmx.
    page.select_option("#id_a", "2")
    page.select_option("#id_b", "1")
    expect(page.locator("#compare")).to_contain_text("Changes from v2 to v1.")
    expect(page.locator("#compare .diff-add")).to_contain_text("+Say hello.")

    agent = Agent.objects.get(name="Browser agent")
    assert agent.versions.count() == 2
    assert agent.current_version.tools == [{"name": "http_fetch", "permission": "ask"}]
