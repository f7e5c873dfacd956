"""The team's monthly budget, set in the browser by owners and admins."""

from decimal import Decimal

import pytest
from django.urls import reverse

from agentops.runs import services
from agentops.runs.models import RunStatus, TeamBudget
from agentops.teams.models import AuditEvent, Role

pytestmark = pytest.mark.django_db

BUDGET = reverse("runs:budget")
SAVE = BUDGET  # the form posts to the page itself


def test_an_admin_sets_the_budget_and_the_next_run_stops_at_it(
    alice_client, make_agent, drain, sim, alice, team_a
):
    page = alice_client.get(BUDGET)
    assert page.status_code == 200 and "No monthly budget." in page.text
    agent = make_agent()
    first = drain(services.run_start(agent=agent, input="Say hi.", actor=alice))
    response = alice_client.post(
        SAVE, {"monthly_tokens": first.total_tokens, "monthly_cost_usd": "25"}
    )
    assert response.status_code == 302 and response.url == BUDGET
    budget = TeamBudget.objects.get(team=team_a)
    assert (budget.monthly_tokens, budget.monthly_cost_usd) == (first.total_tokens, Decimal(25))
    event = AuditEvent.objects.get(team=team_a, verb="team_budget.change")
    assert event.before == {"monthly_tokens": None, "monthly_cost_usd": None}
    assert event.after == {"monthly_tokens": first.total_tokens, "monthly_cost_usd": "25.00"}

    page = alice_client.get(BUDGET)
    assert "Team monthly token budget reached" in page.text
    assert f"of {first.total_tokens:,}" in page.text and "of $25.00" in page.text
    assert ">100% used</meter>" in page.text
    second = drain(services.run_start(agent=agent, input="Say hi again.", actor=alice))
    assert second.status == RunStatus.BUDGET_REACHED
    assert len(sim.bodies()) == 1
    # The stopped run says where the limit is set.
    run_page = alice_client.get(reverse("runs:detail", args=[second.pk])).text
    assert f'<a href="{BUDGET}">See the team\'s monthly budget</a>' in run_page


def test_bad_input_is_refused_beside_its_field_and_nothing_changes(alice_client, team_a):
    TeamBudget.objects.create(team=team_a, monthly_tokens=1000)
    response = alice_client.post(SAVE, {"monthly_tokens": "-5", "monthly_cost_usd": "0.001"})
    assert response.status_code == 400
    assert "greater than or equal to 1" in response.text
    assert "Give at least $0.01" in response.text
    assert 'value="-5"' in response.text  # what was typed stays in the form
    assert TeamBudget.objects.get(team=team_a).monthly_tokens == 1000
    assert not AuditEvent.objects.filter(verb="team_budget.change").exists()


def test_clearing_both_limits_lifts_the_budget(alice_client, make_agent, drain, sim, alice, team_a):
    agent = make_agent()
    first = drain(services.run_start(agent=agent, input="Hi.", actor=alice))
    TeamBudget.objects.create(team=team_a, monthly_tokens=first.total_tokens)
    stopped = drain(services.run_start(agent=agent, input="Hi.", actor=alice))
    assert stopped.status == RunStatus.BUDGET_REACHED
    response = alice_client.post(SAVE, {"monthly_tokens": "", "monthly_cost_usd": ""}, follow=True)
    assert "Monthly budget removed" in response.text
    assert "No monthly budget." in response.text
    run = drain(services.run_start(agent=agent, input="Hi.", actor=alice))
    assert run.status == RunStatus.SUCCEEDED, run.error


def test_members_see_it_admins_change_it_and_each_team_has_its_own(
    member_of_team_a, login, charlie_client, team_a, team_b
):
    TeamBudget.objects.create(team=team_a, monthly_cost_usd=Decimal("12.50"))
    viewer = login(member_of_team_a(Role.VIEWER))
    page = viewer.get(BUDGET)
    assert page.status_code == 200 and "of $12.50" in page.text
    assert "Only owners and admins" in page.text and 'name="monthly_tokens"' not in page.text
    assert viewer.post(SAVE, {"monthly_cost_usd": "1000"}).status_code == 403
    editor = login(member_of_team_a(Role.EDITOR))
    assert editor.post(SAVE, {"monthly_cost_usd": "1000"}).status_code == 403
    assert TeamBudget.objects.get(team=team_a).monthly_cost_usd == Decimal("12.50")

    assert "No monthly budget." in charlie_client.get(BUDGET).text  # team B's, not A's
    charlie_client.post(SAVE, {"monthly_cost_usd": "3"})
    assert TeamBudget.objects.get(team=team_b).monthly_cost_usd == Decimal(3)
    assert TeamBudget.objects.get(team=team_a).monthly_cost_usd == Decimal("12.50")


def test_forms_that_start_model_work_say_when_the_budget_is_used_up(
    alice_client, make_agent, drain, sim, alice, team_a
):
    from agentops.memory.services import memory_store_create
    from agentops.workflows.services import Specialist, workflow_create

    agent = make_agent()
    workflow = workflow_create(
        team=team_a,
        actor=alice,
        name="Pair",
        lead_agent=make_agent(),
        roster=[Specialist(agent=agent, role_description="helps.")],
    )
    store = memory_store_create(
        team=team_a, actor=alice, name="Notes", description="", instructions=""
    )
    pages = [
        reverse("agents:detail", args=[agent.pk]),
        reverse("workflows:detail", args=[workflow.pk]),
        reverse("memory:dream-start", args=[store.pk]),
    ]
    warning = "Whatever starts now stops before its first model call"
    first = drain(services.run_start(agent=agent, input="Say hi.", actor=alice))
    TeamBudget.objects.create(team=team_a, monthly_tokens=first.total_tokens + 1)
    for page in pages:
        assert warning not in alice_client.get(page).text  # one token left: not used up
    TeamBudget.objects.filter(team=team_a).update(monthly_tokens=first.total_tokens)
    for page in pages:
        text = alice_client.get(page).text
        assert "Team monthly token budget reached" in text and warning in text, page
        assert f'<a href="{BUDGET}">monthly budget</a>' in text
