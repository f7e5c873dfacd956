"""Fixtures for workflows: a lead and specialists in team A, a workflow factory, and the
in-process simulator the engine talks to."""

import uuid

import pytest

from agentops.agents.services import agent_create
from agentops.runs import services as engine
from agentops.workflows.services import Specialist, workflow_create


@pytest.fixture(autouse=True)
def _generous_rate_limits(generous_rate_limits):
    pass


@pytest.fixture
def make_agent(team_a, alice):
    def make(name, *, team=None, actor=None, max_tokens=2048, prompt=None, tools=()):
        return agent_create(
            team=team or team_a,
            actor=actor or alice,
            name=name,
            model="claude-sonnet-4-6",
            system_prompt=prompt or f"You are {name}.",
            max_tokens=max_tokens,
            tools=list(tools),
        )

    return make


@pytest.fixture
def lead(make_agent):
    return make_agent("Lead", max_tokens=4096, prompt="You lead a team of specialists.")


@pytest.fixture
def specialists(make_agent):
    return [
        make_agent("Researcher", prompt="You research facts."),
        make_agent("Writer", prompt="You write clearly."),
        make_agent("Critic", prompt="You find weaknesses."),
    ]


@pytest.fixture
def make_workflow(team_a, alice, lead, specialists):
    def make(*, roster=None, name="Report team", **limits):
        roster = roster if roster is not None else specialists
        return workflow_create(
            team=team_a,
            actor=alice,
            name=name,
            description="Writes reports.",
            lead_agent=lead,
            roster=[
                Specialist(agent=agent, role_description=f"the {agent.name.lower()}.")
                for agent in roster
            ],
            **limits,
        )

    return make


@pytest.fixture
def drain():
    def run_it(run, max_steps=300):
        return engine.run_execute_inline(run=run, max_steps=max_steps)

    return run_it


@pytest.fixture
def private_queue():
    """A Celery queue of this test's own, for the workers it starts and the steps it sends."""
    from agentops.celery import app

    queue = f"agentops-test-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = previous
