"""Finished demo runs, made by really executing them in this process against the in-process
simulator (idempotent: make run calls it on every start)."""

from agentops.agents.models import Agent

from .models import Run, RunTrigger
from .services import inline_execution, run_execute_inline, run_start

DEMO_RUNS = [
    ("Support writer", "A customer asks how to reset their password. Draft a short reply."),
    ("Support writer", "A customer was charged twice this month. Draft a reply. [sim:refusal]"),
    (
        "Research assistant",
        "Summarise what https://example.com/pricing says about the team plan.",
    ),
]


def seed_demo_data(*, team, owner, reviewer):
    if Run.objects.filter(team=team, trigger=RunTrigger.DEMO).exists():
        return
    for agent_name, text in DEMO_RUNS:
        agent = Agent.objects.filter(team=team, name=agent_name).first()
        if agent is None or agent.current_version is None:
            continue
        with inline_execution():  # executed right here; nothing to send to a worker
            run = run_start(agent=agent, input=text, actor=owner, trigger=RunTrigger.DEMO)
        run_execute_inline(run=run)
