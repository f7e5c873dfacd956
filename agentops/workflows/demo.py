"""A demo workflow with a finished run (executed in this process against the in-process
simulator) and a weekly schedule. Idempotent: make run calls it on every start."""

from decimal import Decimal

from agentops.agents.models import Agent
from agentops.agents.services import agent_create
from agentops.outcomes.models import Rubric
from agentops.outcomes.services import rubric_create
from agentops.runs.models import RunTrigger
from agentops.runs.services import run_execute_inline

from .models import Schedule, ScheduleKind, Workflow, WorkflowRun
from .services import Specialist, schedule_create, workflow_create, workflow_run_start

MODEL = "claude-sonnet-4-6"
DEMO_AGENTS = [
    ("Launch lead", 4096, "You lead a launch review: split the work, then combine the answers."),
    ("Market analyst", 1024, "You judge demand, pricing and competitors. Be concrete."),
    ("Risk reviewer", 1024, "You list the risks of a plan, most serious first."),
    ("Copy editor", 1024, "You tighten wording and flag unclear claims."),
]
ROLES = {
    "Market analyst": "Judges demand, pricing and the competition.",
    "Risk reviewer": "Finds legal, technical and reputational risks.",
    "Copy editor": "Checks the announcement text for clarity.",
}
# The risk reviewer's answers are graded (and revised) before the lead gets them.
RISK_RUBRIC = {
    "name": "Risk list quality",
    "description": "A list of risks a launch team can act on.",
    "pass_threshold": Decimal("0.8"),
    "max_iterations": 3,
    "grader_model": "claude-haiku-4-5",
    "criteria": [
        {
            "name": "Severity",
            "guidance": "Each risk says how likely and how bad it is; the worst come first.",
            "weight": Decimal("2"),
            "scale_max": 5,
            "minimum": 3,
        },
        {
            "name": "Mitigation",
            "guidance": "Each serious risk has a concrete way to reduce it.",
            "weight": Decimal("1"),
            "scale_max": 5,
            "minimum": None,
        },
    ],
}
GRADED_SPECIALIST = "Risk reviewer"
WORKFLOW = "Launch review"
INPUT = "Review our plan to launch a team plan at $12 per seat next month."


def _agent(team, owner, name, max_tokens, prompt):
    agent = Agent.objects.filter(team=team, name=name).first()
    if agent is None:
        agent = agent_create(
            team=team,
            actor=owner,
            name=name,
            model=MODEL,
            system_prompt=prompt,
            max_tokens=max_tokens,
        )
    return agent


def seed_demo_data(*, team, owner, reviewer):
    agents = {
        name: _agent(team, owner, name, tokens, prompt) for name, tokens, prompt in DEMO_AGENTS
    }
    rubric = Rubric.objects.filter(team=team, name=RISK_RUBRIC["name"]).first()
    if rubric is None:
        rubric = rubric_create(team=team, actor=owner, **RISK_RUBRIC)
    workflow = Workflow.objects.filter(team=team, name=WORKFLOW).first()
    if workflow is None:
        workflow = workflow_create(
            team=team,
            actor=owner,
            name=WORKFLOW,
            description="A lead splits a launch plan between three specialists and combines "
            "their answers; the risk reviewer's list is graded before the lead sees it.",
            lead_agent=agents["Launch lead"],
            roster=[
                Specialist(
                    agent=agents[name],
                    role_description=role,
                    rubric=rubric if name == GRADED_SPECIALIST else None,
                )
                for name, role in ROLES.items()
            ],
            max_parallel=3,
            max_children=6,
        )
    if not WorkflowRun.objects.filter(workflow=workflow, run__trigger=RunTrigger.DEMO).exists():
        run = workflow_run_start(
            workflow=workflow, input=INPUT, actor=owner, trigger=RunTrigger.DEMO
        )
        run_execute_inline(run=run)
    if not Schedule.objects.filter(team=team, workflow=workflow).exists():
        schedule_create(
            team=team,
            actor=owner,
            name="Weekly launch review",
            workflow=workflow,
            input=INPUT,
            kind=ScheduleKind.CRON,
            cron="0 9 * * mon",
            timezone="Europe/Paris",
        )
