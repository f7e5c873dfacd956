"""Fixtures for memory: a store of team A with an attached agent."""

import pytest

from agentops.agents.services import agent_create
from agentops.memory import services
from agentops.memory.models import AttachmentMode


@pytest.fixture
def support_agent(team_a, alice):
    return agent_create(
        team=team_a,
        actor=alice,
        name="Support bot",
        model="claude-sonnet-4-5",
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
