"""The journey: build a workflow in the browser, with a rubric for one specialist, run it,
watch the thread tree fill in while a real Celery worker runs the lead, its specialists and the
specialist's grader against the simulator server."""

import pytest

from agentops.llm.simulator.server import start_simulator_server
from agentops.outcomes.demo import DEMO_RUBRIC
from agentops.outcomes.services import rubric_create
from agentops.workflows.models import Workflow
from tests.runs.processes import Worker, broker_url, worker_env


@pytest.mark.browser
@pytest.mark.slow
def test_build_a_workflow_run_it_and_watch_the_tree(
    browser_login, alice, team_a, lead, specialists, private_queue
):
    from playwright.sync_api import expect

    rubric_create(team=team_a, actor=alice, **DEMO_RUBRIC)
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
        page.select_option("#id_roster-0-rubric", label=DEMO_RUBRIC["name"])
        page.select_option("#id_roster-1-agent", label="Writer")
        page.fill("#id_roster-1-role_description", "Writes the summary.")
        page.get_by_role("button", name="Create workflow").click()
        expect(page.locator("h1")).to_contain_text("Browser desk")
        expect(page.locator(".config")).to_contain_text("Delegate")
        expect(page.locator(".config + table")).to_contain_text(DEMO_RUBRIC["name"])

        page.fill("#id_input", "Brief me on heat pumps.")
        page.get_by_role("button", name="Start run").click()
        expect(page.locator("h1")).to_contain_text("Run #")
        run_url = page.url
        # The tree polls while the run is active: the specialists' rows appear and finish
        # without the page being reloaded; the researcher's answer is graded twice (a
        # revision, then a pass) before the lead synthesizes.
        expect(page.locator("#tree")).to_have_attribute("data-status", "succeeded", timeout=45_000)
        assert page.url == run_url
        expect(page.locator(".thread-row")).to_have_count(5)
        expect(page.locator(".thread-row", has_text="grader")).to_have_count(2)
        researcher = page.locator(".thread-row", has_text="Researcher").first
        expect(researcher.locator(".grade")).to_contain_text("Satisfied")
        expect(page.locator("#run-output")).to_contain_text("researcher")
        expect(page.locator(".thread-row svg rect")).to_have_count(5)
        page.get_by_role("link", name="Writer").click()
        expect(page.locator(".transcript")).to_contain_text("Task from the parent")
        expect(page.locator(".transcript")).to_contain_text("Writes the summary")
        workflow = Workflow.objects.get(name="Browser desk")
        assert workflow.runs.get().run.status == "succeeded"
    finally:
        worker.stop()
        server.stop()
