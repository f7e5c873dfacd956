from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from agentops.outcomes import services
from agentops.outcomes.demo import seed_demo_data
from agentops.outcomes.models import (
    CriterionScore,
    Evaluation,
    EvaluationStatus,
    HumanCriterionScore,
    Iteration,
    Rubric,
    RubricVersion,
    Verdict,
)
from agentops.teams.models import AuditEvent, Role

from .factories import CRITERIA, grade, graded_evaluation, make_agent_version, make_rubric


def test_create_saves_version_one_with_keyed_criteria_and_audits(team_a, alice):
    rubric = make_rubric(
        team_a,
        alice,
        golden_examples=[{"output": "Good.", "expected_verdict": "satisfied", "note": ""}],
    )
    version = rubric.current_version
    assert version.number == 1 and version.name == "Support reply"
    assert [c.key for c in version.criteria.all()] == ["accuracy", "completeness", "tone"]
    assert [c.position for c in version.criteria.all()] == [0, 1, 2]
    assert version.golden_examples.get().expected_verdict == "satisfied"
    assert rubric.slug == "support-reply"
    event = AuditEvent.objects.get(verb="rubric.create")
    assert event.actor == alice and event.after["version"] == 1
    assert event.after["criteria"][0]["weight"] == "2"


def _errors(team, **overrides):
    values = {"name": "R", "criteria": CRITERIA, **overrides}
    with pytest.raises(ValidationError) as caught:
        services.rubric_create(team=team, actor=None, **values)
    return caught.value.message_dict


@pytest.mark.parametrize(
    "overrides,field,message",
    [
        ({"criteria": []}, "criteria", "at least one criterion"),
        ({"pass_threshold": Decimal("1.5")}, "pass_threshold", "above 0 and at most 1"),
        ({"pass_threshold": Decimal("0")}, "pass_threshold", "above 0 and at most 1"),
        ({"max_iterations": 21}, "max_iterations", "less than or equal to 20"),
        ({"max_iterations": 0}, "max_iterations", "greater than or equal to 1"),
        ({"min_kappa": Decimal("1.2")}, "min_kappa", "less than or equal to 1"),
        ({"criteria": [{**CRITERIA[0], "weight": Decimal("0")}]}, "criteria", "weight"),
        ({"criteria": [{**CRITERIA[0], "weight": Decimal("-1")}]}, "criteria", "greater than 0"),
        ({"criteria": [{**CRITERIA[0], "minimum": 6}]}, "criteria", "within the scale"),
        ({"criteria": [{**CRITERIA[0], "scale_max": 0}]}, "criteria", "scale max"),
        ({"criteria": [CRITERIA[0], CRITERIA[0]]}, "criteria", "the same as criterion 1"),
        (
            {"golden_examples": [{"output": "x", "expected_verdict": "great"}]},
            "golden_examples",
            "expected verdict",
        ),
    ],
)
def test_bad_rubric_input_is_a_field_error(team_a, overrides, field, message):
    errors = _errors(team=team_a, **overrides)
    assert field in errors
    assert any(message in text for text in errors[field]), errors
    assert not Rubric.objects.exists()


def test_rubric_names_are_unique_per_team(team_a, team_b, alice, charlie):
    make_rubric(team_a, alice)
    with pytest.raises(ValidationError, match="already has a rubric named"):
        make_rubric(team_a, alice, name="support REPLY")
    make_rubric(team_b, charlie)  # another team may use the name


def test_an_edit_is_a_new_version_and_leaves_old_evaluations_pinned(team_a, alice):
    rubric = make_rubric(team_a, alice, max_iterations=1)
    evaluation = graded_evaluation(team_a, rubric, [grade(4, 3, 1)])
    old_version = evaluation.rubric_version
    old_scores = list(
        CriterionScore.objects.filter(iteration__evaluation=evaluation).values_list(
            "criterion__name", "criterion__weight", "score"
        )
    )

    new = services.rubric_update(
        rubric=rubric,
        actor=alice,
        name="Support reply (strict)",
        criteria=[{**CRITERIA[0], "weight": Decimal("5")}, CRITERIA[2]],
        pass_threshold=Decimal("0.95"),
    )
    assert new.number == 2
    rubric.refresh_from_db()
    assert rubric.current_version == new and rubric.name == "Support reply (strict)"
    assert RubricVersion.objects.filter(rubric=rubric).count() == 2

    evaluation.refresh_from_db()
    assert evaluation.rubric_version == old_version
    old_version.refresh_from_db()
    assert old_version.name == "Support reply" and old_version.pass_threshold == Decimal("0.800")
    assert [c.name for c in old_version.criteria.all()] == ["Accuracy", "Completeness", "Tone"]
    assert evaluation.verdict == Verdict.SATISFIED
    assert evaluation.weighted_score == Decimal("0.8000")
    assert (
        list(
            CriterionScore.objects.filter(iteration__evaluation=evaluation).values_list(
                "criterion__name", "criterion__weight", "score"
            )
        )
        == old_scores
    )
    # New evaluations use the new version.
    later = services.evaluation_create(team=team_a, rubric=rubric, task="t")
    assert later.rubric_version == new
    event = AuditEvent.objects.get(verb="rubric.update")
    assert event.before["version"] == 1 and event.after["version"] == 2
    assert event.before["pass_threshold"] == "0.8" and event.after["pass_threshold"] == "0.95"


def test_saving_without_changes_adds_no_version(team_a, alice):
    rubric = make_rubric(team_a, alice)
    again = services.rubric_update(
        rubric=rubric,
        actor=alice,
        name="Support reply",
        description="A support reply.",
        criteria=[{**c, "weight": str(c["weight"]) + ".00"} for c in CRITERIA],
        pass_threshold="0.800",
    )
    assert again is None
    assert rubric.versions.count() == 1


def test_an_archived_rubric_cannot_be_edited_or_used(team_a, alice):
    rubric = make_rubric(team_a, alice)
    services.rubric_set_archived(rubric=rubric, actor=alice, archived=True)
    with pytest.raises(ValidationError, match="archived"):
        services.rubric_update(rubric=rubric, actor=alice, name="x", criteria=CRITERIA)
    rubric.refresh_from_db()
    with pytest.raises(ValidationError, match="archived"):
        services.evaluation_create(team=team_a, rubric=rubric, task="t")
    assert AuditEvent.objects.filter(verb="rubric.archive").count() == 1


def test_evaluation_create_refuses_another_teams_rubric_or_agent(team_a, team_b, alice, charlie):
    rubric = make_rubric(team_a, alice)
    with pytest.raises(ValidationError, match="another team"):
        services.evaluation_create(team=team_b, rubric=rubric, task="t")
    foreign_agent = make_agent_version(team_b)
    with pytest.raises(ValidationError, match="another team"):
        services.evaluation_create(
            team=team_a, rubric=rubric, task="t", agent_version=foreign_agent
        )


def test_loop_records_revise_then_pass(team_a, alice):
    rubric = make_rubric(team_a, alice)
    agent_version = make_agent_version(team_a)
    evaluation = services.evaluation_create(
        team=team_a, rubric=rubric, task="Reply.", actor=alice, agent_version=agent_version
    )
    first = services.iteration_record(
        evaluation=evaluation,
        output="Draft",
        grade=grade(2, 2, 1, feedback="Check the refund amount."),
        worker_usage={"input_tokens": 10, "output_tokens": 5, "cost_usd": Decimal("0.01")},
        grader_usage={"input_tokens": 30, "output_tokens": 8, "cost_usd": "0.002"},
        grader_attempts=2,
    )
    assert first.verdict == Verdict.NEEDS_REVISION
    evaluation.refresh_from_db()
    assert evaluation.status == EvaluationStatus.RUNNING
    assert evaluation.verdict == Verdict.NEEDS_REVISION

    second = services.iteration_record(evaluation=evaluation, output="Better", grade=grade(5, 4, 1))
    assert second.verdict == Verdict.SATISFIED and second.number == 2
    evaluation.refresh_from_db()
    assert evaluation.status == EvaluationStatus.FINISHED
    assert evaluation.verdict == Verdict.SATISFIED
    assert evaluation.iterations_count == 2
    assert evaluation.weighted_score == Decimal("0.9500")  # (2 + 0.8 + 1) / 4
    assert evaluation.finished_at is not None
    assert evaluation.agent == agent_version.agent

    kept = list(evaluation.iterations.order_by("number"))
    assert [it.output for it in kept] == ["Draft", "Better"]
    assert kept[0].feedback == "Check the refund amount."
    assert kept[0].weighted_score == Decimal("0.5500")  # (0.8 + 0.4 + 1) / 4
    assert kept[0].worker_cost_usd == Decimal("0.01") and kept[0].grader_input_tokens == 30
    assert kept[0].cost_usd == Decimal("0.012") and kept[0].grader_attempts == 2
    assert {s.criterion.key: s.score for s in kept[0].scores.all()} == {
        "accuracy": 2,
        "completeness": 2,
        "tone": 1,
    }
    finish = AuditEvent.objects.get(verb="evaluation.finish")
    assert finish.actor is None and finish.actor_label == "outcome loop"
    assert finish.after["verdict"] == "satisfied"


def test_loop_hits_the_cap(team_a, alice):
    rubric = make_rubric(team_a, alice, max_iterations=2)
    evaluation = graded_evaluation(team_a, rubric, [grade(1, 1, 0), grade(2, 2, 0)])
    assert evaluation.verdict == Verdict.MAX_ITERATIONS_REACHED
    assert evaluation.status == EvaluationStatus.FINISHED
    assert evaluation.iterations.count() == 2
    assert [it.verdict for it in evaluation.iterations.all()] == [
        Verdict.NEEDS_REVISION,
        Verdict.MAX_ITERATIONS_REACHED,
    ]
    with pytest.raises(ValidationError, match="no longer running"):
        services.iteration_record(evaluation=evaluation, output="again", grade=grade())


def test_a_grader_that_keeps_failing_ends_as_grader_error_not_a_failing_grade(team_a, alice):
    rubric = make_rubric(team_a, alice, min_kappa=Decimal("0.5"))
    evaluation = graded_evaluation(team_a, rubric, [grade(1, 1, 0)])
    iteration = services.iteration_record_grader_error(
        evaluation=evaluation,
        output="Second draft",
        error="GradeFormatError: The grade has no score for: tone.",
        attempts=3,
        grader_usage={"input_tokens": 900, "output_tokens": 120, "cost_usd": "0.003"},
    )
    evaluation.refresh_from_db()
    assert evaluation.verdict == Verdict.GRADER_ERROR
    # No grade to trust or distrust: it does not wait for a kappa, and cannot be reviewed.
    assert evaluation.status == EvaluationStatus.FINISHED
    assert not evaluation.is_reviewable
    assert "no score for: tone" in evaluation.error
    assert iteration.number == 2 and iteration.grader_attempts == 3
    assert iteration.weighted_score is None and not iteration.scores.exists()
    assert iteration.grader_input_tokens == 900
    assert evaluation.iterations.count() == 2  # the earlier graded iteration is kept


def test_cancel_mid_loop_is_interrupted_and_keeps_iterations(team_a, alice):
    rubric = make_rubric(team_a, alice)
    evaluation = graded_evaluation(team_a, rubric, [grade(1, 1, 0)])
    assert evaluation.status == EvaluationStatus.RUNNING
    services.evaluation_interrupt(evaluation=evaluation, actor=alice)
    evaluation.refresh_from_db()
    assert evaluation.verdict == Verdict.INTERRUPTED
    assert evaluation.status == EvaluationStatus.FINISHED
    assert evaluation.iterations.count() == 1
    with pytest.raises(ValidationError):
        services.iteration_record(evaluation=evaluation, output="late", grade=grade())
    with pytest.raises(ValidationError):
        services.evaluation_interrupt(evaluation=evaluation, actor=alice)
    assert AuditEvent.objects.get(verb="evaluation.finish").actor == alice


def test_evaluation_finish_refuses_needs_revision(team_a, alice):
    rubric = make_rubric(team_a, alice)
    evaluation = services.evaluation_create(team=team_a, rubric=rubric, task="t")
    with pytest.raises(ValidationError, match="not a final verdict"):
        services.evaluation_finish(evaluation=evaluation, verdict=Verdict.NEEDS_REVISION)


def test_an_override_is_audited_and_never_touches_the_grader_rows(team_a, alice, bob):
    rubric = make_rubric(team_a, alice, max_iterations=1)
    evaluation = graded_evaluation(team_a, rubric, [grade(5, 4, 1)])
    grader_rows = list(
        CriterionScore.objects.filter(iteration__evaluation=evaluation).values_list(
            "criterion__key", "score", "rationale"
        )
    )
    review = services.evaluation_review(
        evaluation=evaluation,
        reviewer=bob,
        verdict=Verdict.MAX_ITERATIONS_REACHED,
        scores={"accuracy": 2, "completeness": 4, "tone": 1},
        note="The refund amount is wrong.",
    )
    assert review.agreed is False
    assert review.grader_verdict == Verdict.SATISFIED
    assert review.verdict == Verdict.MAX_ITERATIONS_REACHED
    # Only the changed criterion is an override, with the grader's score beside it.
    override = HumanCriterionScore.objects.get(review=review)
    assert (override.criterion.key, override.grader_score, override.score) == ("accuracy", 5, 2)
    assert (
        list(
            CriterionScore.objects.filter(iteration__evaluation=evaluation).values_list(
                "criterion__key", "score", "rationale"
            )
        )
        == grader_rows
    )
    evaluation.refresh_from_db()
    assert evaluation.verdict == Verdict.SATISFIED  # the grader's own verdict stays
    assert evaluation.weighted_score == Decimal("0.9500")
    assert evaluation.human_verdict == Verdict.MAX_ITERATIONS_REACHED
    assert evaluation.effective_verdict == Verdict.MAX_ITERATIONS_REACHED
    assert evaluation.human_agreed is False and evaluation.review_count == 1

    event = AuditEvent.objects.get(verb="evaluation.review")
    assert event.actor == bob
    assert event.before == {"status": "finished", "verdict": "satisfied", "scores": {"accuracy": 5}}
    assert event.after["scores"] == {"accuracy": 2} and event.after["agreed"] is False
    assert event.after["note"] == "The refund amount is wrong."

    # A second review is a new row; the first stays as it was.
    second = services.evaluation_review(evaluation=evaluation, reviewer=alice)
    assert second.agreed is True and not second.overrides.exists()
    assert evaluation.reviews.count() == 2
    assert HumanCriterionScore.objects.get(review=review).score == 2
    evaluation.refresh_from_db()
    assert evaluation.human_agreed is True and evaluation.review_count == 2
    assert services.human_scores(review, services.final_scores(evaluation)) == {
        "accuracy": 2,
        "completeness": 4,
        "tone": 1,
    }


def test_review_input_is_checked(team_a, alice, bob, member_of_team_a):
    rubric = make_rubric(team_a, alice, max_iterations=1)
    evaluation = graded_evaluation(team_a, rubric, [grade(5, 4, 1)])
    with pytest.raises(ValidationError, match="0 to 5"):
        services.evaluation_review(evaluation=evaluation, reviewer=bob, scores={"accuracy": 6})
    with pytest.raises(ValidationError, match="no score for 'style'"):
        services.evaluation_review(evaluation=evaluation, reviewer=bob, scores={"style": 1})
    with pytest.raises(ValidationError, match="whole number"):
        services.evaluation_review(evaluation=evaluation, reviewer=bob, scores={"tone": "1"})
    with pytest.raises(ValidationError, match="not a verdict"):
        services.evaluation_review(evaluation=evaluation, reviewer=bob, verdict="needs_revision")
    viewer = member_of_team_a(Role.VIEWER)
    with pytest.raises(ValidationError, match="not a reviewer"):
        services.evaluation_review(evaluation=evaluation, reviewer=viewer)
    assert not evaluation.reviews.exists()
    running = services.evaluation_create(team=team_a, rubric=rubric, task="t")
    with pytest.raises(ValidationError, match="finished, graded"):
        services.evaluation_review(evaluation=running, reviewer=bob)


def test_a_review_identical_to_the_grader_counts_as_agreement(team_a, alice, bob):
    rubric = make_rubric(team_a, alice, max_iterations=1)
    evaluation = graded_evaluation(team_a, rubric, [grade(5, 4, 1)])
    review = services.evaluation_review(
        evaluation=evaluation,
        reviewer=bob,
        verdict=Verdict.SATISFIED,
        scores={"accuracy": 5, "completeness": 4, "tone": 1},
    )
    assert review.agreed is True and not review.overrides.exists()


def test_assign_to_a_reviewer_only(team_a, alice, bob, member_of_team_a):
    rubric = make_rubric(team_a, alice, max_iterations=1)
    evaluation = graded_evaluation(team_a, rubric, [grade()])
    services.evaluation_assign(evaluation=evaluation, actor=alice, assignee=bob)
    evaluation.refresh_from_db()
    assert evaluation.assigned_to == bob
    with pytest.raises(ValidationError, match="not a reviewer"):
        services.evaluation_assign(
            evaluation=evaluation, actor=alice, assignee=member_of_team_a(Role.VIEWER)
        )
    services.evaluation_assign(evaluation=evaluation, actor=alice, assignee=None)
    evaluation.refresh_from_db()
    assert evaluation.assigned_to is None
    events = AuditEvent.objects.filter(verb="evaluation.assign").order_by("id")
    assert [e.after["assigned_to"] for e in events] == ["bob", None]


def test_demo_seed_is_idempotent(team_a, alice, bob):
    seed_demo_data(team=team_a, owner=alice, reviewer=bob)
    seed_demo_data(team=team_a, owner=alice, reviewer=bob)
    # The demo rubric and its one-try variant; graded runs need the demo agents (seeded by
    # agentops.agents.demo, not here), so none are made.
    rubrics = Rubric.objects.filter(team=team_a)
    assert rubrics.count() == 2
    for rubric in rubrics:
        assert rubric.versions.count() == 1
        assert rubric.current_version.criteria.count() == 3
    assert not Evaluation.objects.exists() and not Iteration.objects.exists()
