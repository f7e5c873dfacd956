"""The model-access journey in Chromium: add a key, test it, set a limit, see usage."""

import pytest
from playwright.sync_api import expect

from agentops.llm import tasks
from agentops.llm.simulator.server import start_simulator_server

pytestmark = pytest.mark.browser

SECRET = "sk-ant-api03-" + "Br0wser" * 8 + "-k3Y9"


@pytest.fixture
def simulator_server(settings):
    server = start_simulator_server()
    # No network: the team's key is sent to the local simulator server, never to Anthropic.
    settings.ANTHROPIC_BASE_URL = server.url
    settings.ANTHROPIC_API_KEY = ""
    yield server
    server.stop()


def test_add_test_limit_and_usage(alice, page, browser_login, simulator_server, monkeypatch):
    # No worker runs here: the queued key test runs when the transaction commits.
    monkeypatch.setattr(tasks.llm_test_key, "delay", lambda team_id: tasks.llm_test_key(team_id))
    browser_login(alice)
    page.goto("/settings/model/")
    expect(page.locator("h1")).to_have_text("Model access")
    expect(page.locator("#source-note")).to_contain_text("offline simulator")

    page.fill("#id_api_key", SECRET)
    page.click("text=Save key")
    expect(page.locator(".message.success")).to_contain_text("ending in k3Y9")
    expect(page.locator(".masked-key")).to_have_text("…k3Y9")
    expect(page.locator("#source-note")).to_contain_text("Team key")

    page.click("text=Test key")
    expect(page.locator("#key-status")).to_contain_text("Works")
    expect(page.locator("#key-status")).to_contain_text("models available")

    page.fill("#id_rpm", "0")
    page.fill("#id_itpm", "30000")
    page.fill("#id_otpm", "8000")
    page.click("text=Add limit")
    # The browser refuses it first (min=1); the server's own field errors are tested apart.
    expect(page.locator("#id_rpm:invalid")).to_have_count(1)
    page.fill("#id_rpm", "50")
    page.click("text=Add limit")
    expect(page.locator(".message.success")).to_contain_text("Rate limit saved")
    expect(page.locator("table.table")).to_contain_text("every other model")
    assert SECRET not in page.content()

    page.click("nav.mainnav >> text=Usage")
    expect(page.locator("h1")).to_have_text("Usage")
    expect(page.locator(".empty-state").first).to_contain_text("No model calls")
    assert SECRET not in page.content()
