"""Fixtures for memory: a store of team A with an attached agent."""

import pytest

from agentops.agents.services import agent_create
from agentops.llm.catalogue import DEFAULT_MODEL
from agentops.memory import services
from agentops.memory.models import AttachmentMode
from agentops.runs.services import run_execute_inline, run_start


@pytest.fixture(autouse=True)
def _generous_rate_limits(generous_rate_limits):
    pass


@pytest.fixture
def run_agent(alice):
    """Run an agent to its end in this process, against the simulator."""

    def run(agent, text):
        return run_execute_inline(run=run_start(agent=agent, input=text, actor=alice))

    return run


@pytest.fixture
def support_agent(team_a, alice):
    return agent_create(
        team=team_a,
        actor=alice,
        name="Support bot",
        model=DEFAULT_MODEL,
        system_prompt="You answer customer questions.",
        max_tokens=1024,
    )


@pytest.fixture
def store(team_a, alice):
    return services.memory_store_create(
        team=team_a,
        actor=alice,
        name="Support knowledge",
        description="What the support agents learned.",
        instructions="Prefer these facts over guesses.",
    )


@pytest.fixture
def attached(store, support_agent, alice):
    return services.attachment_add(
        store=store,
        actor=alice,
        agent=support_agent,
        mode=AttachmentMode.READ_WRITE,
        token_budget=400,
    )


@pytest.fixture
def make_memory(store, alice):
    def make(title, content, *, tags=(), status="active", target_store=None):
        return services.memory_create(
            store=target_store or store,
            actor=alice,
            title=title,
            content=content,
            tags=tags,
            status=status,
        )

    return make
