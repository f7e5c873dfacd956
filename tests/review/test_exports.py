import csv
import io
import json

import pytest
from django.urls import reverse

from agentops.outcomes import services
from agentops.outcomes.models import Verdict
from agentops.review.exports import CSV_COLUMNS
from agentops.teams.models import Role
from tests.outcomes.factories import grade, graded_evaluation, make_rubric


@pytest.fixture
def evaluations(team_a, alice, bob):
    rubric = make_rubric(team_a, alice, max_iterations=2)
    reviewed = graded_evaluation(
        team_a, rubric, [grade(2, 2, 1, feedback="More."), grade(5, 4, 1)], task="=HYPERLINK(1)"
    )
    services.evaluation_review(
        evaluation=reviewed,
        reviewer=bob,
        verdict=Verdict.MAX_ITERATIONS_REACHED,
        scores={"accuracy": 1},
        note='Wrong, "badly".\nSecond line.',
    )
    unreviewed = graded_evaluation(team_a, rubric, [grade()])
    return reviewed, unreviewed


def _body(response):
    return b"".join(response.streaming_content).decode()


def test_csv_export_has_evaluations_with_their_latest_review(bob_client, evaluations):
    reviewed, unreviewed = evaluations
    response = bob_client.get(reverse("review:export-csv"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert list(rows[0].keys()) == CSV_COLUMNS
    by_id = {int(row["evaluation_id"]): row for row in rows}
    assert set(by_id) == {reviewed.pk, unreviewed.pk}
    row = by_id[reviewed.pk]
    assert row["grader_verdict"] == "satisfied" and row["human_verdict"] == "max_iterations_reached"
    assert row["agreed"] == "false" and row["reviewer"] == "bob" and row["reviews"] == "1"
    assert row["iterations"] == "2" and row["weighted_score"] == "0.9500"
    assert json.loads(row["grader_scores"]) == {"accuracy": 5, "completeness": 4, "tone": 1}
    assert json.loads(row["human_scores"]) == {"accuracy": 1, "completeness": 4, "tone": 1}
    assert row["review_note"] == 'Wrong, "badly".\nSecond line.'
    assert row["effective_verdict"] == "max_iterations_reached"
    assert row["task"] == "'=HYPERLINK(1)"  # a spreadsheet formula is neutralised
    assert row["final_output"].startswith("Answer, draft 2.")
    assert by_id[unreviewed.pk]["reviews"] == "0" and by_id[unreviewed.pk]["reviewer"] == ""


def test_jsonl_export_has_every_iteration_and_review(bob_client, evaluations):
    reviewed, _ = evaluations
    response = bob_client.get(reverse("review:export-jsonl") + "?reviewed=yes")
    assert response.status_code == 200
    lines = _body(response).splitlines()
    assert len(lines) == 1  # filtered like the queue
    record = json.loads(lines[0])
    assert record["evaluation_id"] == reviewed.pk
    assert record["task"] == "=HYPERLINK(1)"  # JSON keeps the text exactly
    assert [it["verdict"] for it in record["iteration_log"]] == ["needs_revision", "satisfied"]
    assert record["iteration_log"][0]["feedback"] == "More."
    assert record["iteration_log"][0]["scores"]["accuracy"] == {
        "score": 2,
        "rationale": "accuracy is 2",
    }
    assert record["iteration_log"][1]["usage"]["worker"]["input_tokens"] == 100
    review = record["reviews"][0]
    assert review["reviewer"] == "bob" and review["overrides"] == {"accuracy": 1}
    assert review["grader_verdict"] == "satisfied" and review["agreed"] is False


def test_exports_are_filtered_and_team_scoped(
    bob_client, charlie_client, login, member_of_team_a, evaluations
):
    response = bob_client.get(reverse("review:export-csv") + "?agreement=disagree")
    assert len(list(csv.DictReader(io.StringIO(_body(response))))) == 1
    response = bob_client.get(reverse("review:export-csv") + "?reviewed=no")
    assert len(list(csv.DictReader(io.StringIO(_body(response))))) == 1
    # Another team's export holds none of team A's evaluations.
    assert _body(charlie_client.get(reverse("review:export-jsonl"))) == ""
    rows = list(
        csv.DictReader(io.StringIO(_body(charlie_client.get(reverse("review:export-csv")))))
    )
    assert rows == []
    viewer = login(member_of_team_a(Role.VIEWER))
    assert viewer.get(reverse("review:export-jsonl")).status_code == 200
