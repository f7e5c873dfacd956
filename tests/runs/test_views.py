from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agentops.runs import services
from agentops.runs.models import Run, RunStatus, StepKind, StepStatus
from agentops.teams.models import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(make_agent):
    return make_agent(name="Helper")


@pytest.fixture
def run(agent, alice):
    return services.run_start(agent=agent, input="Say hello.", actor=alice)


@pytest.fixture
def finished_run(run, drain, sim):
    return drain(run)


# --- list ---------------------------------------------------------------------------------


def test_list_shows_team_runs_with_filters(alice_client, finished_run, agent, make_agent, alice):
    other = make_agent(name="Other")
    services.run_start(agent=other, input="Unrelated words", actor=alice)
    response = alice_client.get(reverse("runs:list"))
    assert response.status_code == 200
    assert f"#{finished_run.pk}" in response.text
    filtered = alice_client.get(
        reverse("runs:list"), {"agent": agent.pk, "status": RunStatus.SUCCEEDED}
    )
    assert f"#{finished_run.pk}" in filtered.text and "Unrelated" not in filtered.text
    by_text = alice_client.get(reverse("runs:list"), {"q": "unrelated"})
    assert "Unrelated" in by_text.text and f"#{finished_run.pk}<" not in by_text.text
    empty = alice_client.get(reverse("runs:list"), {"status": RunStatus.CANCELLED})
    assert "No runs match these filters" in empty.text
    # A value that does not parse is said beside its field; the other filters still apply.
    half = alice_client.get(reverse("runs:list"), {"q": "unrelated", "since": "notadate"})
    assert "Enter a valid date." in half.text
    assert "Unrelated" in half.text and f"#{finished_run.pk}<" not in half.text
    # A range that ends before it starts says so, and the start date still applies.
    today = timezone.localdate()
    backwards = alice_client.get(
        reverse("runs:list"), {"since": today.isoformat(), "until": "2000-01-01"}
    )
    assert "Pick a date on or after the start date." in backwards.text
    assert f"#{finished_run.pk}<" in backwards.text
    later = alice_client.get(
        reverse("runs:list"),
        {"since": (today + timedelta(days=1)).isoformat(), "until": "2000-01-01"},
    )
    assert f"#{finished_run.pk}<" not in later.text


def test_list_htmx_returns_the_fragment(alice_client, run):
    response = alice_client.get(reverse("runs:list"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "<html" not in response.text and 'id="runs"' in response.text


def test_the_list_refreshes_itself_only_while_a_run_on_it_is_going(
    alice_client, finished_run, agent, alice
):
    services.run_start(agent=agent, input="Still going.", actor=alice)  # queued
    assert 'hx-trigger="every 5s"' in alice_client.get(reverse("runs:list")).text
    done = alice_client.get(reverse("runs:list"), {"status": RunStatus.SUCCEEDED}).text
    assert f"#{finished_run.pk}<" in done and 'hx-trigger="every 5s"' not in done


def test_list_paginates(alice_client, agent, alice, settings):
    settings.PAGE_SIZE = 2
    for n in range(3):
        services.run_start(agent=agent, input=f"Run {n}", actor=alice)
    response = alice_client.get(reverse("runs:list"))
    assert "Page 1 of 2" in response.text


def test_list_hides_other_teams_runs(charlie_client, run):
    response = charlie_client.get(reverse("runs:list"))
    assert response.status_code == 200
    assert f"#{run.pk}" not in response.text
    assert "No runs" in response.text


def test_list_needs_login(client):
    assert client.get(reverse("runs:list")).status_code == 302


# --- detail -------------------------------------------------------------------------------


def test_detail_shows_the_transcript(bob_client, finished_run):
    response = bob_client.get(reverse("runs:detail", args=[finished_run.pk]))
    assert response.status_code == 200
    assert "Succeeded" in response.text
    assert "Say hello." in response.text
    step = finished_run.steps.get()
    assert f'id="step-{step.pk}"' in response.text
    assert "stop: end_turn" in response.text
    assert "hx-trigger" not in response.text  # finished: no polling
    assert "Cancel run" not in response.text  # bob is a reviewer


def test_detail_polls_only_while_active(alice_client, run):
    response = alice_client.get(reverse("runs:detail", args=[run.pk]))
    assert 'hx-trigger="every 1500ms"' in response.text
    partial = alice_client.get(
        reverse("runs:detail", args=[run.pk]), headers={"HX-Request": "true"}
    )
    assert "<html" not in partial.text and 'id="live"' in partial.text


def test_detail_renders_thinking_collapsed_and_escapes_output(alice_client, finished_run):
    step = finished_run.steps.get()
    step.response = {
        "content": [
            {"type": "thinking", "thinking": "private reasoning", "signature": "x"},
            {"type": "text", "text": "<script>alert(1)</script> **bold**"},
        ]
    }
    step.save()
    response = alice_client.get(reverse("runs:detail", args=[finished_run.pk]))
    assert '<details class="thinking"><summary>Thinking</summary>' in response.text
    assert "<script>alert(1)</script>" not in response.text
    assert "<strong>bold</strong>" in response.text


def test_detail_of_another_team_is_404(charlie_client, run):
    assert charlie_client.get(reverse("runs:detail", args=[run.pk])).status_code == 404


# --- start ----------------------------------------------------------------------------------


def test_agent_page_has_the_run_form(alice_client, agent):
    response = alice_client.get(reverse("agents:detail", args=[agent.pk]))
    assert reverse("runs:start", args=[agent.pk]) in response.text


def test_start_creates_a_run(alice_client, agent, alice):
    response = alice_client.post(
        reverse("runs:start", args=[agent.pk]),
        {"input": "Plan a trip.", "max_turns": 5, "max_continuations": 0, "budget_tokens": 900},
    )
    run = Run.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("runs:detail", args=[run.pk])
    assert run.created_by == alice and run.max_turns == 5 and run.budget_tokens == 900
    assert run.steps.get().status == StepStatus.QUEUED


def test_start_rejects_bad_input_with_field_errors(alice_client, agent):
    response = alice_client.post(
        reverse("runs:start", args=[agent.pk]),
        {
            "input": "  ",
            "max_turns": 0,
            "max_continuations": 0,
            "budget_tokens": -3,
            "budget_cost_usd": "0",
        },
    )
    assert response.status_code == 400
    assert "field-error" in response.text
    assert "Give at least $0.000001, or leave it empty for no limit." in response.text
    assert reverse("agents:detail", args=[agent.pk]) in response.text  # a way back
    assert Run.objects.count() == 0


def test_start_form_page(alice_client, agent):
    response = alice_client.get(reverse("runs:start", args=[agent.pk]))
    assert response.status_code == 200 and "Run this agent" in response.text


def test_start_needs_editor(bob_client, agent):
    response = bob_client.post(reverse("runs:start", args=[agent.pk]), {"input": "x"})
    assert response.status_code == 403


def test_editor_may_start(login, member_of_team_a, agent):
    client = login(member_of_team_a(Role.EDITOR))
    response = client.post(
        reverse("runs:start", args=[agent.pk]),
        {"input": "Go.", "max_turns": 3, "max_continuations": 0},
    )
    assert response.status_code == 302


def test_start_on_another_teams_agent_is_404(charlie_client, agent):
    response = charlie_client.post(reverse("runs:start", args=[agent.pk]), {"input": "x"})
    assert response.status_code == 404


# --- cancel and rerun -------------------------------------------------------------------


def test_cancel(alice_client, run):
    response = alice_client.post(reverse("runs:cancel", args=[run.pk]))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_cancel_a_finished_run_says_so(alice_client, finished_run):
    response = alice_client.post(reverse("runs:cancel", args=[finished_run.pk]), follow=True)
    assert "already ended" in response.text


def test_cancel_denied(bob_client, charlie_client, run):
    assert bob_client.post(reverse("runs:cancel", args=[run.pk])).status_code == 403
    assert charlie_client.post(reverse("runs:cancel", args=[run.pk])).status_code == 404
    run.refresh_from_db()
    assert run.is_active


def test_rerun(alice_client, finished_run):
    response = alice_client.post(
        reverse("runs:rerun", args=[finished_run.pk]), {"version": "latest"}
    )
    new = Run.objects.exclude(pk=finished_run.pk).get()
    assert response.status_code == 302 and response.url == reverse("runs:detail", args=[new.pk])
    assert new.rerun_of == finished_run


def test_rerun_denied(bob_client, charlie_client, finished_run):
    url = reverse("runs:rerun", args=[finished_run.pk])
    assert bob_client.post(url, {"version": "same"}).status_code == 403
    assert charlie_client.post(url, {"version": "same"}).status_code == 404


# --- approval ---------------------------------------------------------------------------


def test_a_step_waiting_for_the_rate_limit_says_so_and_until_when(bob_client, run):
    step = run.steps.get()
    step.status = StepStatus.RUNNING
    step.attempts = 1
    step.not_before = timezone.now() + timedelta(seconds=90)
    step.save()
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    page = bob_client.get(reverse("runs:detail", args=[run.pk]))
    goes_out = timezone.localtime(step.not_before).strftime("%H:%M:%S")
    assert "Waiting for rate limit" in page.text
    assert f"the next model call goes out at about {goes_out}" in page.text
    assert f"this call goes out at about {goes_out}" in page.text
    step.not_before = timezone.now() - timedelta(seconds=1)  # its call has gone out
    step.save()
    page = bob_client.get(reverse("runs:detail", args=[run.pk]))
    assert "Waiting for rate limit" not in page.text and "Working…" in page.text


@pytest.fixture
def awaiting_step(make_agent, alice, drain, sim):
    agent = make_agent(tools=[{"name": "get_weather", "permission": "ask"}])
    run = drain(services.run_start(agent=agent, input="Use get_weather for Lisbon.", actor=alice))
    return run.steps.get(kind=StepKind.TOOL_CALL)


def test_approval_screen_and_deny(alice_client, awaiting_step):
    url = reverse("runs:approval", args=[awaiting_step.pk])
    page = alice_client.get(url)
    assert page.status_code == 200 and "get_weather" in page.text
    assert "&quot;city&quot;:" in page.text  # the input as indented JSON
    detail = alice_client.get(reverse("runs:detail", args=[awaiting_step.run_id]))
    assert "Waiting for your approval" in detail.text
    assert 'hx-trigger="every 5s"' in detail.text  # slower polling while a person decides
    response = alice_client.post(url, {"decision": "deny", "message": "No."})
    assert response.status_code == 302
    awaiting_step.refresh_from_db()
    assert awaiting_step.status == StepStatus.SUCCEEDED
    assert awaiting_step.response["is_error"]


def test_approval_approve(alice_client, awaiting_step):
    url = reverse("runs:approval", args=[awaiting_step.pk])
    alice_client.post(url, {"decision": "approve", "message": ""})
    awaiting_step.refresh_from_db()
    assert awaiting_step.status == StepStatus.QUEUED
    assert awaiting_step.run.status == RunStatus.RUNNING


def test_approval_bad_form(alice_client, awaiting_step):
    url = reverse("runs:approval", args=[awaiting_step.pk])
    response = alice_client.post(url, {"decision": "maybe"})
    assert response.status_code == 400 and "field-error" in response.text


def test_reviewer_may_decide_a_tool_call(bob_client, awaiting_step):
    url = reverse("runs:approval", args=[awaiting_step.pk])
    assert bob_client.get(url).status_code == 200
    assert bob_client.post(url, {"decision": "approve"}).status_code == 302
    awaiting_step.refresh_from_db()
    assert awaiting_step.decision_by.username == "bob"


def test_approval_denied(member_of_team_a, login, charlie_client, awaiting_step):
    url = reverse("runs:approval", args=[awaiting_step.pk])
    viewer = login(member_of_team_a(Role.VIEWER))
    assert viewer.get(url).status_code == 403
    assert charlie_client.get(url).status_code == 404
    assert charlie_client.post(url, {"decision": "approve"}).status_code == 404
    awaiting_step.refresh_from_db()
    assert awaiting_step.status == StepStatus.AWAITING_APPROVAL


# --- compare ----------------------------------------------------------------------------


def test_compare_two_runs(bob_client, finished_run, agent, alice):
    other = services.run_start(agent=agent, input="Something else", actor=alice)
    response = bob_client.get(reverse("runs:compare"), {"a": finished_run.pk, "b": other.pk})
    assert response.status_code == 200
    assert f"Run #{finished_run.pk}" in response.text and f"Run #{other.pk}" in response.text


def test_compare_empty_and_invalid(bob_client, finished_run):
    assert "Pick two runs" in bob_client.get(reverse("runs:compare")).text
    assert bob_client.get(reverse("runs:compare"), {"a": "x"}).status_code == 400
    itself = {"a": finished_run.pk, "b": finished_run.pk}
    response = bob_client.get(reverse("runs:compare"), itself)
    assert response.status_code == 400
    assert "Choose a different run to compare with." in response.text


def test_compare_with_another_teams_run_is_the_same_as_no_run(
    charlie_client, run, charlie, make_agent
):
    own = make_agent(name="Charlie's", team=charlie.memberships.get().team, actor=charlie)
    mine = services.run_start(agent=own, input="hi", actor=charlie)
    response = charlie_client.get(reverse("runs:compare"), {"a": mine.pk, "b": run.pk})
    assert response.status_code == 400
    assert f"There is no run #{run.pk} in this team." in response.text
    assert run.input not in response.text
    missing = charlie_client.get(reverse("runs:compare"), {"a": mine.pk, "b": 999999})
    assert missing.status_code == 400
    assert "There is no run #999999 in this team." in missing.text


def test_a_run_that_went_over_its_budget_on_its_last_call_says_so(
    alice_client, agent, alice, drain, sim
):
    run = drain(services.run_start(agent=agent, input="Say hello.", actor=alice, budget_tokens=1))
    assert run.status == RunStatus.SUCCEEDED  # its one call was allowed: 0 of 1 used before it
    page = alice_client.get(reverse("runs:detail", args=[run.pk])).text
    assert f"{run.total_tokens:,} tokens of a 1-token budget" in page
    within = drain(services.run_start(agent=agent, input="Say hello.", actor=alice))
    assert (
        "Went over its budget"
        not in alice_client.get(reverse("runs:detail", args=[within.pk])).text
    )
