"""Rubrics and evaluations built through the outcomes services, for tests."""

from decimal import Decimal

from agentops.agents.models import Agent, AgentVersion
from agentops.outcomes import services
from agentops.outcomes.grading import CriterionGrade, ParsedGrade

CRITERIA = [
    {
        "name": "Accuracy",
        "guidance": "Every fact is right.",
        "weight": Decimal("2"),
        "scale_max": 5,
        "minimum": 3,
    },
    {
        "name": "Completeness",
        "guidance": "Answers every question.",
        "weight": Decimal("1"),
        "scale_max": 5,
        "minimum": None,
    },
    {
        "name": "Tone",
        "guidance": "Polite and plain.",
        "weight": Decimal("1"),
        "scale_max": 1,
        "minimum": None,
    },
]


def make_rubric(team, actor, **overrides):
    values = {
        "name": "Support reply",
        "description": "A support reply.",
        "criteria": CRITERIA,
        "pass_threshold": Decimal("0.8"),
        "max_iterations": 3,
        **overrides,
    }
    return services.rubric_create(team=team, actor=actor, **values)


def grade(accuracy=5, completeness=5, tone=1, feedback="Fine.", applies=True):
    if not applies:
        return ParsedGrade(applies=False, feedback=feedback)
    return ParsedGrade(
        applies=True,
        feedback=feedback,
        scores={
            "accuracy": CriterionGrade(accuracy, f"accuracy is {accuracy}"),
            "completeness": CriterionGrade(completeness, f"completeness is {completeness}"),
            "tone": CriterionGrade(tone, f"tone is {tone}"),
        },
    )


def tool_input(accuracy=5, completeness=5, tone=1, feedback="Fine.", applies=True):
    return {
        "applies": applies,
        "feedback": feedback,
        "scores": {
            "accuracy": {"score": accuracy, "rationale": "a"},
            "completeness": {"score": completeness, "rationale": "c"},
            "tone": {"score": tone, "rationale": "t"},
        },
    }


def make_agent_version(team, name="Helper"):
    agent = Agent.objects.create(team=team, name=name, slug=name.lower())
    version = AgentVersion.objects.create(
        agent=agent, number=1, model="claude-haiku-4-5", system_prompt="Help."
    )
    agent.current_version = version
    agent.save()
    return version


def graded_evaluation(team, rubric, grades, task="Answer the customer.", agent_version=None):
    """An evaluation run through iteration_record once per grade, one output each."""
    evaluation = services.evaluation_create(
        team=team, rubric=rubric, task=task, agent_version=agent_version
    )
    for number, parsed in enumerate(grades, start=1):
        services.iteration_record(
            evaluation=evaluation,
            output=f"Answer, draft {number}.\nSecond line.",
            grade=parsed,
            worker_usage={"input_tokens": 100, "output_tokens": 50, "cost_usd": "0.001"},
            grader_usage={"input_tokens": 300, "output_tokens": 80, "cost_usd": "0.0005"},
        )
    evaluation.refresh_from_db()
    return evaluation
