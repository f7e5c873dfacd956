from decimal import Decimal

import pytest

from agentops.outcomes import services
from agentops.outcomes.calibration import (
    MIN_REVIEWS,
    calibration_for,
    cohens_kappa,
    confusion_matrix,
    grader_trusted,
)
from agentops.outcomes.models import EvaluationStatus, Verdict

from .factories import CRITERIA, grade, graded_evaluation, make_rubric

S, M, F = Verdict.SATISFIED, Verdict.MAX_ITERATIONS_REACHED, Verdict.FAILED


def test_kappa_of_the_textbook_two_by_two_example():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15.
    # p_o = 35/50 = 0.7; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.2 / 0.5 = 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohens_kappa(a, b) == pytest.approx(0.4)


def test_kappa_of_a_second_known_example():
    # 100 items: 45/15/25/15 -> p_o = 0.6, p_e = 0.6*0.7 + 0.4*0.3 = 0.54, kappa = 0.06/0.46
    a = ["yes"] * 60 + ["no"] * 40
    b = ["yes"] * 45 + ["no"] * 15 + ["yes"] * 25 + ["no"] * 15
    assert cohens_kappa(a, b) == pytest.approx(0.06 / 0.46)
    assert round(cohens_kappa(a, b), 4) == 0.1304


def test_kappa_edge_cases():
    assert cohens_kappa(["x", "y"], ["y", "x"]) == pytest.approx(-1.0)
    assert cohens_kappa(["x"] * 5, ["x"] * 5) == 1.0  # one shared label: complete agreement
    assert cohens_kappa([], []) is None
    with pytest.raises(ValueError):
        cohens_kappa(["x"], [])


def test_confusion_matrix_rows_are_the_first_rater():
    matrix = confusion_matrix(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c"])
    assert matrix == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


@pytest.fixture
def rubric(team_a, alice):
    # One iteration per evaluation: a low grade ends as max_iterations_reached at once.
    return make_rubric(team_a, alice, max_iterations=1)


def _reviewed(team, rubric, reviewer, grader, human, scores=None):
    parsed = {
        S: grade(5, 5, 1),
        M: grade(1, 1, 0),
        F: grade(applies=False),
    }[grader]
    evaluation = graded_evaluation(team, rubric, [parsed])
    assert evaluation.verdict == grader
    services.evaluation_review(
        evaluation=evaluation, reviewer=reviewer, verdict=human, scores=scores
    )
    return evaluation


def build_24_reviews(team, rubric, reviewer):
    """Grader x human: S/S 10, S/M 2, M/M 8, M/S 3, F/F 1 (24 in all)."""
    for i in range(10):
        # One S/S evaluation also overrides tone 1 -> 0 (the verdict still agrees).
        _reviewed(team, rubric, reviewer, S, S, {"tone": 0} if i == 0 else None)
    for _ in range(2):
        _reviewed(team, rubric, reviewer, S, M, {"accuracy": 2})  # |5 - 2| = 3
    for _ in range(8):
        _reviewed(team, rubric, reviewer, M, M)
    for _ in range(3):
        _reviewed(team, rubric, reviewer, M, S, {"completeness": 4})  # |1 - 4| = 3
    _reviewed(team, rubric, reviewer, F, F)


def test_calibration_figures_match_hand_computed_values(team_a, alice, bob, rubric):
    build_24_reviews(team_a, rubric, bob)
    # Not counted: unreviewed, grader error, and another version's evaluations.
    graded_evaluation(team_a, rubric, [grade(5, 5, 1)])
    errored = services.evaluation_create(team=team_a, rubric=rubric, task="t")
    services.iteration_record_grader_error(evaluation=errored, output="o", error="x", attempts=3)

    figures = calibration_for(rubric.current_version)
    assert figures.reviewed == 24 and figures.ready and figures.needed == 0
    # p_o = (10 + 8 + 1) / 24
    assert figures.verdict_agreement == pytest.approx(19 / 24)
    assert figures.agreement_percent == "79.2%"
    # grader marginals S 12, M 11, F 1; human S 13, M 10, F 1
    # p_e = (12*13 + 11*10 + 1*1) / 576 = 267/576; kappa = (456 - 267) / (576 - 267) = 189/309
    assert figures.kappa == pytest.approx(189 / 309)
    assert figures.labels == [S, M, F]
    assert figures.matrix == [[10, 2, 0], [3, 8, 0], [0, 0, 1]]
    by_key = {row.criterion.key: row for row in figures.criteria}
    # 23 evaluations have criterion scores (the failed one has none).
    assert by_key["accuracy"].compared == 23
    assert by_key["accuracy"].mean_abs_diff == pytest.approx(6 / 23)
    assert by_key["completeness"].mean_abs_diff == pytest.approx(9 / 23)
    assert by_key["tone"].mean_abs_diff == pytest.approx(1 / 23)


def test_only_the_latest_review_of_an_evaluation_counts(team_a, alice, bob, rubric):
    evaluation = _reviewed(team_a, rubric, bob, S, M, {"accuracy": 0})
    figures = calibration_for(rubric.current_version)
    assert figures.verdict_agreement == 0.0
    services.evaluation_review(evaluation=evaluation, reviewer=alice)  # agrees
    figures = calibration_for(rubric.current_version)
    assert figures.reviewed == 1
    assert figures.verdict_agreement == 1.0
    assert {r.criterion.key: r.mean_abs_diff for r in figures.criteria}["accuracy"] == 0.0


def test_below_twenty_reviews_it_says_how_many_more(team_a, alice, bob, rubric):
    for _ in range(3):
        _reviewed(team_a, rubric, bob, S, S)
    figures = calibration_for(rubric.current_version)
    assert figures.reviewed == 3 and not figures.ready
    assert figures.needed == MIN_REVIEWS - 3 == 17


def test_no_reviews_at_all(team_a, alice, rubric):
    figures = calibration_for(rubric.current_version)
    assert figures.reviewed == 0 and figures.kappa is None and figures.needed == 20
    assert figures.matrix == [[0, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert [row.mean_abs_diff for row in figures.criteria] == [None, None, None]


def test_min_kappa_holds_verdicts_for_review_until_the_grader_earns_trust(team_a, alice, bob):
    rubric = make_rubric(team_a, alice, max_iterations=1, min_kappa=Decimal("0.6"))
    version = rubric.current_version
    first = graded_evaluation(team_a, rubric, [grade(5, 5, 1)])
    assert first.status == EvaluationStatus.PENDING_REVIEW
    assert first.effective_verdict == ""  # the grader's verdict does not count yet
    assert not grader_trusted(version)

    build_24_reviews(team_a, rubric, bob)  # kappa 189/309 = 0.612 >= 0.6
    first.refresh_from_db()
    assert first.status == EvaluationStatus.PENDING_REVIEW  # still waiting for its human
    assert grader_trusted(version)
    later = graded_evaluation(team_a, rubric, [grade(5, 5, 1)])
    assert later.status == EvaluationStatus.FINISHED
    assert later.effective_verdict == Verdict.SATISFIED


def test_a_kappa_below_the_minimum_keeps_verdicts_pending(team_a, alice, bob):
    rubric = make_rubric(team_a, alice, max_iterations=1, min_kappa=Decimal("0.7"))
    build_24_reviews(team_a, rubric, bob)  # 0.612 < 0.7
    assert not grader_trusted(rubric.current_version)
    later = graded_evaluation(team_a, rubric, [grade(5, 5, 1)])
    assert later.status == EvaluationStatus.PENDING_REVIEW
    services.evaluation_review(evaluation=later, reviewer=bob)
    later.refresh_from_db()
    assert later.status == EvaluationStatus.FINISHED
    assert later.effective_verdict == Verdict.SATISFIED


def test_calibration_is_per_version(team_a, alice, bob, rubric):
    build_24_reviews(team_a, rubric, bob)
    new = services.rubric_update(
        rubric=rubric, actor=alice, name=rubric.name, criteria=CRITERIA, max_iterations=2
    )
    assert calibration_for(new).reviewed == 0
    assert calibration_for(rubric.versions.get(number=1)).reviewed == 24
