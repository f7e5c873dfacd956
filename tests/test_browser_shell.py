import pytest
from playwright.sync_api import expect

from agentops.navigation import SECTIONS
from agentops.teams.models import Membership, Role

pytestmark = pytest.mark.browser


def test_log_in_switch_team_and_visit_every_page(alice, charlie, team_b, page, browser_login):
    Membership.objects.create(team=team_b, user=alice, role=Role.VIEWER)
    browser_login(alice)
    expect(page.locator("h1")).to_have_text("Team A")

    page.select_option("#team-switch", label="Team B")
    expect(page.locator(".message.success")).to_contain_text("Now working in Team B")
    expect(page.locator("h1")).to_have_text("Team B")

    for section in SECTIONS:
        page.click(f"nav.mainnav >> text={section.label}")
        expect(page.locator("h1")).to_contain_text(section.label)
        expect(page.locator('nav.mainnav a[aria-current="page"]')).to_have_text(section.label)

    page.click("text=Log out")
    expect(page.locator("h1")).to_have_text("Log in")
