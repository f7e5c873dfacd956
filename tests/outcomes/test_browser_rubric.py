import pytest
from playwright.sync_api import expect

from agentops.outcomes.models import Rubric

pytestmark = pytest.mark.browser


def test_editor_creates_a_rubric_adding_a_criterion_row(alice, page, browser_login):
    browser_login(alice)
    page.click("nav.mainnav >> text=Rubrics")
    expect(page.locator("h1")).to_have_text("Rubrics")
    page.click("text=Create the first rubric")
    page.fill("#id_name", "Haiku quality")
    page.fill("#id_criteria-0-name", "Syllables")
    page.fill("#id_criteria-0-guidance", "Five, seven, five.")
    page.fill("#id_criteria-0-scale_max", "1")
    page.click("button[data-formset-add=criteria]")
    expect(page.locator("#id_criteria-1-name")).to_be_focused()
    page.fill("#id_criteria-1-name", "Imagery")
    page.fill("#id_criteria-1-guidance", "One clear image.")
    page.fill("#id_criteria-1-weight", "2")
    page.click("text=Create rubric")
    expect(page.locator("h1")).to_contain_text("Haiku quality")
    expect(page.locator("#calibration")).to_contain_text("Needs 20 more reviews")
    rubric = Rubric.objects.get()
    assert [(c.name, c.scale_max) for c in rubric.current_version.criteria.all()] == [
        ("Syllables", 1),
        ("Imagery", 5),
    ]
