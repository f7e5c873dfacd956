import pytest
from playwright.sync_api import expect

from agentops.outcomes import services
from tests.outcomes.factories import grade, graded_evaluation, make_rubric

pytestmark = pytest.mark.browser


def test_reviewer_overrides_a_criterion_and_sees_agreement_change(
    team_a, alice, bob, page, browser_login
):
    rubric = make_rubric(team_a, alice, max_iterations=1)
    for _ in range(20):
        reviewed = graded_evaluation(team_a, rubric, [grade(5, 5, 1)])
        services.evaluation_review(evaluation=reviewed, reviewer=alice)
    waiting = graded_evaluation(team_a, rubric, [grade(5, 5, 1)], task="Refund question")

    browser_login(bob)
    page.click("nav.mainnav >> text=Review")
    expect(page.locator("h1")).to_have_text("Review queue")
    page.select_option("#id_reviewed", "no")  # htmx swaps the list in place
    expect(page.locator("#evaluations tbody tr")).to_have_count(1)
    page.click(f"text=#{waiting.pk}")

    expect(page.locator("h1")).to_contain_text(f"Evaluation #{waiting.pk}")
    calibration = page.locator("#calibration")
    expect(calibration.locator('[data-figure="agreement"]')).to_have_text("100.0%")
    expect(calibration.locator('[data-figure="mad-accuracy"]')).to_have_text("0.000")

    page.keyboard.press("o")  # focuses the first criterion's override
    expect(page.locator("#id_score_accuracy")).to_be_focused()
    page.keyboard.type("2")  # the field's text was selected: this replaces it
    page.select_option("#id_verdict", "max_iterations_reached")
    page.fill("#id_note", "The refund amount is wrong.")
    page.click("#override-button")

    expect(page.locator(".message.success")).to_contain_text("Review saved with your overrides")
    expect(page.locator("#reviews")).to_contain_text("Accuracy: 5 → 2")
    expect(page.locator('#scores [data-criterion="accuracy"] [data-human-score]')).to_have_text("2")
    # 20 of 21 verdicts agree now; accuracy differs by 3 on one of 21.
    expect(calibration.locator('[data-figure="agreement"]')).to_have_text("95.2%")
    expect(calibration.locator('[data-figure="mad-accuracy"]')).to_have_text("0.143")
    expect(calibration.locator('[data-figure="reviewed"]')).to_have_text("21")

    page.click(f"text={rubric.name} v1")
    expect(page.locator("#calibration [data-figure='agreement']")).to_have_text("95.2%")


def test_keyboard_agree_and_next(team_a, alice, bob, page, browser_login):
    rubric = make_rubric(team_a, alice, max_iterations=1)
    older = graded_evaluation(team_a, rubric, [grade(5, 5, 1)])
    newer = graded_evaluation(team_a, rubric, [grade(5, 5, 1)])

    browser_login(bob)
    page.goto(f"/review/evaluations/{newer.pk}/")
    page.keyboard.press("a")
    expect(page.locator(".message.success")).to_contain_text("you agreed with the grader")
    page.keyboard.press("n")
    expect(page.locator("h1")).to_contain_text(f"Evaluation #{older.pk}")
    page.keyboard.press("p")
    expect(page.locator("h1")).to_contain_text(f"Evaluation #{newer.pk}")
    newer.refresh_from_db()
    assert newer.human_agreed is True
