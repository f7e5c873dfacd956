"""Demo content: a rubric with three criteria, a one-try variant of it, graded runs for each
verdict path and a few human reviews.

The graded runs are really executed in this process by the run engine against the
in-process simulator, which plays worker, grader and reviser: no evaluation is invented here.
"""

from decimal import Decimal

from agentops.agents.models import Agent
from agentops.runs.models import RunTrigger
from agentops.runs.services import inline_execution, run_execute_inline

from .loop import run_start_graded
from .models import Evaluation, Rubric
from .services import evaluation_review, rubric_create

DEMO_RUBRIC = {
    "name": "Support reply quality",
    "description": "A customer-support reply: correct, complete and kind.",
    "pass_threshold": Decimal("0.8"),
    "max_iterations": 3,
    "grader_model": "claude-haiku-4-5",
    "grader_instructions": "Grade as a senior support lead would. Be concrete in feedback.",
    "criteria": [
        {
            "name": "Accuracy",
            "guidance": "Every statement about the product and the customer's account is "
            "correct; nothing is invented.",
            "weight": Decimal("2"),
            "scale_max": 5,
            "minimum": 3,
        },
        {
            "name": "Completeness",
            "guidance": "Answers every question the customer asked and says what happens next.",
            "weight": Decimal("1"),
            "scale_max": 5,
            "minimum": None,
        },
        {
            "name": "Tone",
            "guidance": "Polite, plain and warm; no blame, no jargon.",
            "weight": Decimal("1"),
            "scale_max": 1,
            "minimum": None,
        },
    ],
    "golden_examples": [
        {
            "output": "Thanks for writing in! Your refund of $20 was issued today and reaches "
            "your card in 3-5 business days. I've also turned off auto-renewal as asked.",
            "expected_verdict": "satisfied",
            "note": "Correct, complete, kind.",
        },
        {
            "output": "Refunds are not possible.",
            "expected_verdict": "needs_revision",
            "note": "Wrong and curt.",
        },
    ],
}


ONE_TRY_RUBRIC = {**DEMO_RUBRIC, "name": "Support reply, first draft", "max_iterations": 1}
REFUND_TASK = "A customer asks why their refund has not arrived yet. Reply to them."
# (rubric, task): revised then satisfied; the cap; the rubric does not apply; a grader error.
GRADED_RUNS = [
    (DEMO_RUBRIC, REFUND_TASK),
    (ONE_TRY_RUBRIC, "A customer asks whether they can change their plan mid-month. Reply."),
    (DEMO_RUBRIC, "Write a short poem about autumn. [sim:rubric_does_not_apply]"),
    (DEMO_RUBRIC, "A customer asks about late fees. Reply to them. [sim:grader_malformed]"),
]


def _rubric(team, owner, values):
    rubric = Rubric.objects.filter(team=team, name=values["name"]).first()
    return rubric or rubric_create(team=team, actor=owner, **values)


def seed_demo_data(*, team, owner, reviewer):
    rubrics = {id(values): _rubric(team, owner, values) for values in (DEMO_RUBRIC, ONE_TRY_RUBRIC)}
    if Evaluation.objects.filter(team=team, run__trigger=RunTrigger.DEMO).exists():
        return
    agent = Agent.objects.filter(team=team, name="Support writer").first()
    if agent is None or agent.current_version is None:
        return
    evaluations = []
    for values, task in GRADED_RUNS:
        with inline_execution():  # executed right here; nothing to send to a worker
            run = run_start_graded(
                rubric=rubrics[id(values)],
                agent=agent,
                input=task,
                actor=owner,
                trigger=RunTrigger.DEMO,
            )
        run = run_execute_inline(run=run)
        evaluations.append(Evaluation.objects.get(run=run))
    satisfied, capped = evaluations[0], evaluations[1]
    if satisfied.is_reviewable:
        evaluation_review(evaluation=satisfied, reviewer=reviewer, note="Clear and complete.")
    if capped.is_reviewable:
        # The reviewer thinks the first draft was kinder than the grader did.
        evaluation_review(
            evaluation=capped,
            reviewer=reviewer,
            scores={"tone": 1},
            note="The tone is fine; accuracy still needs work.",
        )
