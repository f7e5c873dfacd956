"""Demo content: one rubric with three criteria.

Graded runs come with the outcome loop's integration with the run engine: they are made by
running the demo agent against this rubric with the simulator playing worker and grader,
so no evaluation is invented here.
"""

from decimal import Decimal

from .models import Rubric
from .services import rubric_create

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


def seed_demo_data(*, team, owner, reviewer):
    if Rubric.objects.filter(team=team, name=DEMO_RUBRIC["name"]).exists():
        return
    rubric_create(team=team, actor=owner, **DEMO_RUBRIC)
