import pytest
from django.core.management import CommandError, call_command

from agentops.agents import demo as agents_demo
from agentops.runs import demo as runs_demo
from agentops.runs.models import Run, RunStatus, RunTrigger, StepStatus

pytestmark = pytest.mark.django_db


def test_run_agent_inline_succeeds(make_agent, sim, capsys):
    agent = make_agent(name="Cli helper")
    call_command("run_agent", agent.slug, "--input", "Say hello.", "--inline")
    out = capsys.readouterr().out.splitlines()
    run = Run.objects.get()
    assert out[0] == str(run.pk)
    assert out[1] == "succeeded"
    assert run.output.splitlines()[0] in out
    assert run.trigger == RunTrigger.COMMAND


def test_run_agent_exits_nonzero_when_the_run_fails(make_agent, sim, capsys):
    agent = make_agent(name="Cli refuser")
    with pytest.raises(SystemExit) as exit_info:
        call_command("run_agent", agent.slug, "--input", "Do it. [sim:refusal]", "--inline")
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "failed" in captured.out
    assert "refused" in captured.err


def test_run_agent_without_wait_only_queues(make_agent, capsys):
    agent = make_agent(name="Cli queue")
    call_command("run_agent", agent.slug, "--input", "Later.")
    run = Run.objects.get()
    assert capsys.readouterr().out.strip() == str(run.pk)
    assert run.status == RunStatus.QUEUED
    assert run.steps.get().status == StepStatus.QUEUED


def test_run_agent_unknown_or_ambiguous_agent(make_agent, charlie):
    with pytest.raises(CommandError, match="No agent"):
        call_command("run_agent", "nobody", "--input", "x")
    agent = make_agent(name="Twin")
    make_agent(name="Twin", team=charlie.memberships.get().team, actor=charlie)
    with pytest.raises(CommandError, match="--team"):
        call_command("run_agent", agent.slug, "--input", "x")
    call_command("run_agent", agent.slug, "--input", "x", "--team", "team-a")
    assert Run.objects.get().team.slug == "team-a"


def test_demo_runs_are_really_executed_and_idempotent(team_a, alice, bob, sim):
    agents_demo.seed_demo_data(team=team_a, owner=alice, reviewer=bob)
    runs_demo.seed_demo_data(team=team_a, owner=alice, reviewer=bob)
    runs = Run.objects.filter(team=team_a)
    assert runs.count() == len(runs_demo.DEMO_RUNS)
    assert all(not run.is_active for run in runs)
    assert runs.filter(status=RunStatus.SUCCEEDED).count() >= 2
    assert len(sim.bodies()) == sum(run.model_calls for run in runs)  # real model calls
    runs_demo.seed_demo_data(team=team_a, owner=alice, reviewer=bob)
    assert Run.objects.filter(team=team_a).count() == len(runs_demo.DEMO_RUNS)
