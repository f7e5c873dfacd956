import os

import pytest
from django.test import Client

from agentops.agents.models import Agent

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.browser
def test_create_edit_and_compare_an_agent_in_the_browser(live_server, alice):
    from playwright.sync_api import expect, sync_playwright

    client = Client()
    client.force_login(alice)
    session = client.cookies["sessionid"].value
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        context = browser.new_context()
        context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
        page = context.new_page()
        # Script errors and CSP violations; a 400 for the bad form and the absent favicon
        # are expected "failed to load resource" messages.
        page.on(
            "console",
            lambda m: (
                m.type == "error"
                and not m.text.startswith("Failed to load resource")
                and problems.append(m.text)
            ),
        )
        page.goto(f"{live_server.url}/agents/")
        page.get_by_role("link", name="Create the first agent").click()
        page.fill("#id_name", "Browser agent")
        page.select_option("#id_model", "claude-haiku-4-5")
        page.fill("#id_system_prompt", "Say hello.")
        page.fill("#id_max_tokens", "0")
        page.get_by_role("button", name="Create agent").click()
        expect(page.locator(".field-error")).to_contain_text("Max tokens must be between 1")
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
        expect(page.locator("#compare .diff-add")).to_contain_text("+Say hello.")
        expect(page.locator("#compare")).to_contain_text("Changes from v2 to v1.")
        if os.environ.get("AGENTOPS_SCREENSHOTS"):
            page.screenshot(path=f"{os.environ['AGENTOPS_SCREENSHOTS']}/detail.png", full_page=True)
            page.get_by_role("link", name="Edit").click()
            page.screenshot(path=f"{os.environ['AGENTOPS_SCREENSHOTS']}/edit.png", full_page=True)
            page.goto(f"{live_server.url}/agents/tools/")
            page.screenshot(path=f"{os.environ['AGENTOPS_SCREENSHOTS']}/tools.png", full_page=True)
        browser.close()
    agent = Agent.objects.get(name="Browser agent")
    assert agent.versions.count() == 2
    assert problems == []
