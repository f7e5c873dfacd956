"""The memory journey in a real browser: run a dream, approve one change, reject another,
start a run and see the approved memory in its transcript.

The test thread plays the Celery worker: the dream and the run are queued by the pages and
executed here against the in-process simulator, while the pages poll for their progress.
"""

import pytest

from agentops.memory import dreaming
from agentops.memory.models import Dream
from agentops.outcomes.models import Verdict
from agentops.runs.models import Run
from agentops.runs.services import run_execute_inline
from tests.outcomes.factories import grade, graded_evaluation, make_rubric

FACT = "Our refund window is 30 days from delivery."
LESSON = "Always quote the order number in the answer."


@pytest.fixture
def no_broker(monkeypatch):
    """Queued work stays in the database; this test executes it."""
    from agentops.memory.tasks import dream_execute_task
    from agentops.runs.tasks import step_execute

    monkeypatch.setattr(dream_execute_task, "delay", lambda *args, **kwargs: None)
    monkeypatch.setattr(step_execute, "apply_async", lambda *args, **kwargs: None)


@pytest.mark.browser
def test_dream_review_and_the_next_run_in_the_browser(
    browser_login, alice, team_a, attached, support_agent, run_agent, sim, no_broker
):
    from playwright.sync_api import expect

    for n in (101, 102):
        run_agent(support_agent, f"Customer {n} wants a refund. {FACT}")
    rubric = make_rubric(team_a, alice)
    for n in (7, 8):
        evaluation = graded_evaluation(
            team_a,
            rubric,
            [grade(accuracy=2, feedback=LESSON), grade(feedback="Good now.")],
            task=f"Reply to ticket {n}.",
            agent_version=support_agent.current_version,
        )
        assert evaluation.verdict == Verdict.SATISFIED

    page = browser_login(alice)
    page.goto("/memory/")
    page.get_by_role("link", name="Support knowledge").click()
    expect(page.locator("#memories")).to_contain_text("This store has no memories yet")
    page.get_by_role("link", name="Start a dream").click()
    page.get_by_role("button", name="Start dream").click()
    expect(page.locator(".messages")).to_contain_text("Started dream #")
    expect(page.locator("#dream-status")).to_have_text("Queued")

    # The worker's part; the page, polling, reloads itself when the dream is done.
    dream = Dream.objects.get(store=attached.store)
    dreaming.dream_execute_inline(dream_id=dream.pk)
    expect(page.locator("#dream-status")).to_have_text("Succeeded")
    changes = page.locator("article.change")
    expect(changes).to_have_count(2)

    lesson = changes.filter(has_text=LESSON.rstrip("."))
    fact = changes.filter(has_text=FACT.rstrip("."))
    lesson.locator("summary", has_text="Evidence").click()
    expect(lesson.locator(".evidence")).to_contain_text("evaluation #")
    expect(lesson.locator(".diff-add").first).to_contain_text(LESSON.rstrip("."))
    lesson.get_by_role("button", name="Approve").click()
    expect(page.locator(".messages")).to_contain_text("Approved")
    fact.get_by_role("button", name="Reject").click()
    expect(page.locator(".messages")).to_contain_text("Rejected")
    expect(lesson.locator(".badge.ok")).to_have_text("Approved")
    expect(fact.locator(".badge.bad")).to_have_text("Rejected")

    page.goto(f"/agents/{support_agent.pk}/")
    page.fill("#run-input", "A customer asks about order 5531.")
    page.locator("#run-start button[type=submit]").click()
    expect(page.locator("h1")).to_contain_text("Run #")
    run = Run.objects.order_by("-pk").first()
    run_execute_inline(run=run)
    expect(page.locator("#run-status")).to_have_text("Succeeded")
    memories = page.locator("#run-memories")
    expect(memories).to_contain_text(LESSON.rstrip("."))
    expect(memories).not_to_contain_text(FACT.rstrip("."))
    assert LESSON in sim.bodies()[-1]["system"]
