"""The main runs journey in a real browser, with a real Celery worker executing the run."""

import pytest

from agentops.runs.models import Run, RunStatus

from .processes import (
    Worker,
    broker_url,
    needs_postgres_and_redis,
    worker_env,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_postgres_and_redis]


@pytest.fixture
def worker(live_server, private_queue):
    # No ANTHROPIC_BASE_URL: the worker's in-process simulator answers.
    process = Worker(worker_env(redis_url=broker_url()), name="browser", queue=private_queue)
    yield process
    process.stop()


def test_create_an_agent_run_it_watch_it_finish_and_read_the_transcript(
    browser_login, alice, worker
):
    from playwright.sync_api import expect

    page = browser_login(alice)
    page.goto("/agents/")
    page.get_by_role("link", name="Create the first agent").click()
    page.fill("#id_name", "Greeter")
    page.select_option("#id_model", index=0)
    page.fill("#id_system_prompt", "Greet people warmly.")
    page.fill("#id_max_tokens", "1024")
    page.get_by_role("button", name="Create agent").click()
    expect(page.locator("h1")).to_contain_text("Greeter")

    page.fill("#run-input", "Write a short greeting for the new team members.")
    page.get_by_role("button", name="Run v1").click()
    expect(page.locator("h1")).to_contain_text("Run #")
    # The live region polls while the run works and stops once it has finished.
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=30_000)
    expect(page.locator("#live")).not_to_have_attribute("hx-trigger", "every 1500ms")
    run = Run.objects.get()
    assert run.status == RunStatus.SUCCEEDED

    page.get_by_role("link", name="Runs", exact=True).first.click()
    page.get_by_role("link", name=f"#{run.pk}").click()
    transcript = page.locator(".transcript")
    expect(transcript).to_contain_text("Write a short greeting for the new team members.")
    expect(transcript).to_contain_text("stop: end_turn")
    expect(page.locator("#run-output")).not_to_be_empty()
