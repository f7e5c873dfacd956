"""The journey: build a workflow in the browser, run it, watch the thread tree fill in while
a real Celery worker runs the lead and its specialists against the simulator server."""

import pytest

from agentops.llm.simulator.server import start_simulator_server
from agentops.workflows.models import Workflow
from tests.runs.processes import Worker, broker_url, worker_env


@pytest.mark.browser
@pytest.mark.slow
def test_build_a_workflow_run_it_and_watch_the_tree(
    browser_login, alice, lead, specialists, private_queue
):
    from playwright.sync_api import expect

    server = start_simulator_server(latency_ms=600, rpm=100_000, itpm=10**9, otpm=10**9)
    worker = Worker(
        worker_env(redis_url=broker_url(), model_base_url=server.url),
        name="journey",
        queue=private_queue,
    )
    try:
        page = browser_login(alice)
        page.goto("/workflows/")
        page.get_by_role("link", name="Create the first workflow").click()
        page.fill("#id_name", "Browser desk")
        page.select_option("#id_lead_agent", label="Lead")
        page.select_option("#id_roster-0-agent", label="Researcher")
        page.fill("#id_roster-0-role_description", "Finds the facts.")
        page.select_option("#id_roster-1-agent", label="Writer")
        page.fill("#id_roster-1-role_description", "Writes the summary.")
        page.get_by_role("button", name="Create workflow").click()
        expect(page.locator("h1")).to_contain_text("Browser desk")
        expect(page.locator(".config")).to_contain_text("Delegate")

        page.fill("#id_input", "Brief me on heat pumps.")
        page.get_by_role("button", name="Start run").click()
        expect(page.locator("h1")).to_contain_text("Run #")
        run_url = page.url
        # The tree polls while the run is active: the specialists' rows appear and finish
        # without the page being reloaded.
        expect(page.locator(".thread-row")).to_have_count(3, timeout=30_000)
        expect(page.locator("#tree")).to_have_attribute("data-status", "succeeded", timeout=30_000)
        assert page.url == run_url
        expect(page.locator("#run-output")).to_contain_text("researcher")
        expect(page.locator(".thread-row svg rect")).to_have_count(3)
        page.get_by_role("link", name="Writer").click()
        expect(page.locator(".transcript")).to_contain_text("Task from the parent")
        expect(page.locator(".transcript")).to_contain_text("Writes the summary")
        workflow = Workflow.objects.get(name="Browser desk")
        assert workflow.runs.get().run.status == "succeeded"
    finally:
        worker.stop()
        server.stop()
