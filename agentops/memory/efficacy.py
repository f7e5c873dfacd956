"""Does a store help? Outcome scores and pass rates of graded runs given its memories,
against graded runs held out from it."""

from dataclasses import dataclass
from decimal import Decimal

from agentops.outcomes.models import Verdict

from .models import MemoryUse

PLACES = Decimal("0.0001")


@dataclass
class Arm:
    runs: int = 0
    scored: int = 0
    score_total: Decimal = Decimal("0")
    passed: int = 0

    @property
    def mean_score(self):
        if not self.scored:
            return None
        return (self.score_total / self.scored).quantize(PLACES)

    @property
    def pass_rate(self):
        if not self.runs:
            return None
        return (Decimal(self.passed) / self.runs).quantize(PLACES)


@dataclass
class AgentEfficacy:
    agent: object
    with_memory: Arm
    without_memory: Arm

    @property
    def score_difference(self):
        a, b = self.with_memory.mean_score, self.without_memory.mean_score
        return None if a is None or b is None else a - b

    @property
    def pass_rate_difference(self):
        a, b = self.with_memory.pass_rate, self.without_memory.pass_rate
        return None if a is None or b is None else a - b


# Verdicts that grade the output against the rubric: passed or not.
COUNTED_VERDICTS = (Verdict.SATISFIED, Verdict.MAX_ITERATIONS_REACHED)


def store_efficacy(store):
    """One row per agent with graded runs: the graded runs with the store's memories and
    those held out, their mean weighted score and their pass rate (the effective verdict,
    a reviewer's when there is one, is `satisfied`). Only a run's lead thread counts, and
    only a run that was graded on the rubric: one whose grader failed, which was interrupted
    or to which the rubric did not apply says nothing about the memories either way."""
    uses = (
        MemoryUse.objects.filter(
            store=store,
            thread__parent__isnull=True,
            evaluation__isnull=False,
            evaluation__verdict__in=[v for v in Verdict.values if v != Verdict.NEEDS_REVISION],
        )
        .select_related("run__agent", "evaluation")
        .order_by("run__agent__name", "run_id")
    )
    rows = {}
    for use in uses:
        agent = use.run.agent
        row = rows.setdefault(agent.pk, AgentEfficacy(agent, Arm(), Arm()))
        arm = row.without_memory if use.held_out else row.with_memory
        evaluation = use.evaluation
        if evaluation.effective_verdict not in COUNTED_VERDICTS:
            continue
        arm.runs += 1
        if evaluation.weighted_score is not None:
            arm.scored += 1
            arm.score_total += evaluation.weighted_score
        if evaluation.effective_verdict == Verdict.SATISFIED:
            arm.passed += 1
    return list(rows.values())
