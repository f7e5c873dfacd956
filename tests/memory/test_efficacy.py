"""Efficacy figures against hand-computed values."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from agentops.memory import services
from agentops.memory.efficacy import store_efficacy
from agentops.memory.models import MemoryUse
from tests.outcomes.factories import grade, graded_evaluation, make_rubric

# One iteration each (max_iterations=1). Weighted score = (2*accuracy/5 + completeness/5 +
# tone) / 4 with weights 2, 1, 1; a pass needs 0.8 and accuracy >= 3.
PERFECT = grade(5, 5, 1)  # (2 + 1 + 1) / 4 = 1.0, satisfied
GOOD = grade(4, 4, 1)  # (1.6 + 0.8 + 1) / 4 = 0.85, satisfied
WEAK = grade(3, 3, 0)  # (1.2 + 0.6 + 0) / 4 = 0.45, max_iterations_reached
POOR = grade(2, 5, 1)  # (0.8 + 1 + 1) / 4 = 0.70, max_iterations_reached


def test_efficacy_compares_runs_with_and_without_memory(
    sim, attached, make_memory, support_agent, run_agent, team_a, alice, bob_client
):
    make_memory("Refund window", "Refunds are accepted within 30 days.")
    attached.holdout_share = 0.5
    attached.save()
    with_memory, held_out = [], []
    for _ in range(40):
        run = run_agent(support_agent, "Refund question.")
        use = MemoryUse.objects.get(run=run)
        (held_out if use.held_out else with_memory).append(run)
        if len(with_memory) >= 3 and len(held_out) >= 2:
            break
    with_memory, held_out = with_memory[:3], held_out[:2]
    assert len(with_memory) == 3 and len(held_out) == 2

    rubric = make_rubric(team_a, alice, max_iterations=1)
    graded = list(zip(with_memory, [PERFECT, GOOD, WEAK], strict=True)) + list(
        zip(held_out, [PERFECT, POOR], strict=True)
    )
    for run, parsed in graded:
        evaluation = graded_evaluation(
            team_a, rubric, [parsed], agent_version=support_agent.current_version
        )
        assert services.memory_use_link_evaluation(run=run, evaluation=evaluation) == 1

    (row,) = store_efficacy(attached.store)
    assert row.agent == support_agent
    # With memory: scores 1.0, 0.85, 0.45 -> mean 2.30 / 3 = 0.7667; 2 of 3 pass.
    assert row.with_memory.runs == 3
    assert row.with_memory.mean_score == Decimal("0.7667")
    assert row.with_memory.pass_rate == Decimal("0.6667")
    # Held out: 1.0, 0.70 -> mean 0.85; 1 of 2 passes.
    assert row.without_memory.runs == 2
    assert row.without_memory.mean_score == Decimal("0.8500")
    assert row.without_memory.pass_rate == Decimal("0.5000")
    assert row.score_difference == Decimal("-0.0833")
    assert row.pass_rate_difference == Decimal("0.1667")

    page = bob_client.get(reverse("memory:store", args=[attached.store.pk]))
    html = page.content.decode()
    # Scores read as percentages, like everywhere else; differences in points.
    assert "76.7%" in html and "85.0%" in html and "67 %" in html and "50 %" in html
    assert "-8.3 points / +16.7 points" in html


def test_ungraded_runs_do_not_count(sim, attached, support_agent, run_agent):
    run_agent(support_agent, "Refund question.")
    assert store_efficacy(attached.store) == []


def test_link_refuses_another_teams_evaluation(
    sim, attached, support_agent, run_agent, team_b, charlie
):
    run = run_agent(support_agent, "Refund question.")
    rubric = make_rubric(team_b, charlie)
    evaluation = graded_evaluation(team_b, rubric, [PERFECT])
    with pytest.raises(ValidationError, match="another team"):
        services.memory_use_link_evaluation(run=run, evaluation=evaluation)


def test_runs_without_a_grade_are_left_out(sim, attached, support_agent, run_agent, team_a, alice):
    from agentops.outcomes.models import Evaluation, Verdict

    rubric = make_rubric(team_a, alice, max_iterations=1)  # one grade settles each
    runs = [run_agent(support_agent, f"Refund question {n}.") for n in range(2)]
    for run, parsed in zip(runs, [PERFECT, POOR], strict=True):
        evaluation = graded_evaluation(
            team_a, rubric, [parsed], agent_version=support_agent.current_version
        )
        services.memory_use_link_evaluation(run=run, evaluation=evaluation)
    # The second one's grader failed: it says nothing about the memories.
    Evaluation.objects.filter(pk=evaluation.pk).update(
        verdict=Verdict.GRADER_ERROR, weighted_score=None
    )
    (row,) = store_efficacy(attached.store)
    arms = (row.with_memory, row.without_memory)
    assert sum(arm.runs for arm in arms) == 1
    assert sum(arm.passed for arm in arms) == 1
