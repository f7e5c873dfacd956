import pytest
from django.urls import reverse

from agentops.outcomes import services
from agentops.outcomes.models import CriterionScore, HumanReview, Verdict
from agentops.teams.models import AuditEvent, Role
from tests.outcomes.factories import grade, graded_evaluation, make_agent_version, make_rubric


@pytest.fixture
def rubric(team_a, alice):
    return make_rubric(team_a, alice, max_iterations=2)


@pytest.fixture
def evaluation(team_a, rubric):
    """Revised once: needs_revision, then satisfied."""
    return graded_evaluation(
        team_a, rubric, [grade(2, 2, 1, feedback="Fix the **amount**."), grade(5, 4, 1)]
    )


def test_queue_lists_the_teams_evaluations_for_a_viewer(
    login, member_of_team_a, evaluation, team_b, charlie
):
    other = make_rubric(team_b, charlie, name="B rubric", max_iterations=1)
    graded_evaluation(team_b, other, [grade()], task="Team B task")
    response = login(member_of_team_a(Role.VIEWER)).get(reverse("review:queue"))
    assert response.status_code == 200
    assert f"#{evaluation.pk}".encode() in response.content
    assert b"Team B task" not in response.content
    assert b"Satisfied" in response.content and b"not reviewed" in response.content


def test_queue_empty_state(bob_client):
    response = bob_client.get(reverse("review:queue"))
    assert b"Nothing to review yet" in response.content
    response = bob_client.get(reverse("review:queue") + "?verdict=failed")
    assert b"No evaluations match these filters" in response.content


def _ids(response):
    return {e.pk for e in response.context["page"].object_list}


def test_queue_filters(bob_client, team_a, alice, bob, rubric):
    other_rubric = make_rubric(team_a, alice, name="Other", max_iterations=1)
    agent_version = make_agent_version(team_a)
    satisfied = graded_evaluation(team_a, rubric, [grade()], agent_version=agent_version)
    capped = graded_evaluation(team_a, rubric, [grade(1, 1, 0), grade(1, 1, 0)])
    other = graded_evaluation(team_a, other_rubric, [grade(applies=False)])
    running = services.evaluation_create(team=team_a, rubric=rubric, task="t")
    services.evaluation_review(evaluation=satisfied, reviewer=bob)
    services.evaluation_review(evaluation=capped, reviewer=bob, verdict=Verdict.SATISFIED)
    services.evaluation_assign(evaluation=other, actor=alice, assignee=bob)
    services.evaluation_assign(evaluation=running, actor=alice, assignee=alice)

    queue = reverse("review:queue")
    everything = {satisfied.pk, capped.pk, other.pk, running.pk}
    assert _ids(bob_client.get(queue)) == everything
    assert _ids(bob_client.get(f"{queue}?rubric={other_rubric.pk}")) == {other.pk}
    assert _ids(bob_client.get(f"{queue}?agent={agent_version.agent_id}")) == {satisfied.pk}
    assert _ids(bob_client.get(f"{queue}?verdict=max_iterations_reached")) == {capped.pk}
    assert _ids(bob_client.get(f"{queue}?status=running")) == {running.pk}
    assert _ids(bob_client.get(f"{queue}?reviewed=yes")) == {satisfied.pk, capped.pk}
    assert _ids(bob_client.get(f"{queue}?reviewed=no")) == {other.pk, running.pk}
    assert _ids(bob_client.get(f"{queue}?agreement=disagree")) == {capped.pk}
    assert _ids(bob_client.get(f"{queue}?agreement=agree")) == {satisfied.pk}
    assert _ids(bob_client.get(f"{queue}?assigned=me")) == {other.pk}
    assert _ids(bob_client.get(f"{queue}?assigned=alice")) == {running.pk}
    assert _ids(bob_client.get(f"{queue}?assigned=none")) == {satisfied.pk, capped.pk}
    assert _ids(bob_client.get(f"{queue}?rubric={rubric.pk}&reviewed=no")) == {running.pk}
    partial = bob_client.get(f"{queue}?reviewed=no", headers={"HX-Request": "true"})
    assert b"<html" not in partial.content and b'id="evaluations"' in partial.content
    # The export links travel with the filters, also when htmx swaps the list.
    assert b"/review/export.csv?reviewed=no" in partial.content
    assert b"/review/export.jsonl?reviewed=no" in partial.content


def test_queue_paginates(bob_client, team_a, rubric, settings):
    settings.PAGE_SIZE = 2
    for _ in range(3):
        graded_evaluation(team_a, rubric, [grade()])
    response = bob_client.get(reverse("review:queue") + "?verdict=satisfied")
    assert len(response.context["page"].object_list) == 2
    assert b"Page 1 of 2" in response.content
    assert b"verdict=satisfied&amp;page=2" in response.content


def test_evaluation_page_shows_output_scores_timeline_and_diff(bob_client, evaluation, team_a):
    final = evaluation.iterations.get(number=2)
    final.output = "Your refund of **$20** is on its way.\n<script>alert(1)</script>"
    final.save()
    response = bob_client.get(reverse("review:evaluation", args=[evaluation.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<strong>$20</strong>" in html  # Markdown rendered
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html  # sanitized
    assert "accuracy is 5" in html  # rationale
    assert "Fix the <strong>amount</strong>." in html  # feedback of iteration 1
    assert "Iteration 1" in html and "Iteration 2" in html
    assert 'class="diff-del"' in html and 'class="diff-add"' in html
    assert "Changes from iteration 1" in html
    assert "Needs 19 more reviews" not in html and "Needs 20 more reviews" in html
    assert 'id="agree-button"' in html and "data-shortcut-override" in html


def test_viewer_reads_but_cannot_review_or_assign(login, member_of_team_a, evaluation, bob):
    viewer = login(member_of_team_a(Role.VIEWER))
    response = viewer.get(reverse("review:evaluation", args=[evaluation.pk]))
    assert response.status_code == 200
    assert b'id="agree-button"' not in response.content
    url = reverse("review:evaluation-review", args=[evaluation.pk])
    assert viewer.post(url, {"decision": "agree"}).status_code == 403
    assign = reverse("review:evaluation-assign", args=[evaluation.pk])
    assert viewer.post(assign, {"assignee": "bob"}).status_code == 403
    assert not HumanReview.objects.exists()


def test_another_team_gets_404(charlie_client, evaluation):
    for name in ["review:evaluation", "review:evaluation-review", "review:evaluation-assign"]:
        url = reverse(name, args=[evaluation.pk])
        assert charlie_client.post(url, {"decision": "agree"}).status_code == 404
    assert charlie_client.get(reverse("review:evaluation", args=[evaluation.pk])).status_code == 404
    assert not HumanReview.objects.exists()


def test_reviewer_agrees(bob_client, bob, evaluation):
    url = reverse("review:evaluation-review", args=[evaluation.pk])
    response = bob_client.post(url, {"decision": "agree", "note": "Looks right."})
    assert response.status_code == 302
    review = HumanReview.objects.get()
    assert review.agreed and review.reviewer == bob and review.note == "Looks right."
    page = bob_client.get(response["Location"])
    assert b"you agreed with the grader" in page.content


def test_reviewer_overrides_a_criterion_and_the_verdict(bob_client, bob, evaluation):
    before = list(CriterionScore.objects.values_list("id", "score", "rationale"))
    url = reverse("review:evaluation-review", args=[evaluation.pk]) + "?reviewed=no"
    response = bob_client.post(
        url,
        {
            "decision": "override",
            "score_accuracy": "2",
            "score_completeness": "4",
            "score_tone": "1",
            "verdict": "max_iterations_reached",
            "note": "Wrong amount.",
        },
    )
    assert response.status_code == 302
    assert response["Location"].endswith("?reviewed=no")  # keeps the queue's filters
    review = HumanReview.objects.get()
    assert not review.agreed and review.verdict == Verdict.MAX_ITERATIONS_REACHED
    assert {(o.criterion.key, o.grader_score, o.score) for o in review.overrides.all()} == {
        ("accuracy", 5, 2)
    }
    assert list(CriterionScore.objects.values_list("id", "score", "rationale")) == before
    assert AuditEvent.objects.filter(verb="evaluation.review", actor=bob).exists()
    page = bob_client.get(reverse("review:evaluation", args=[evaluation.pk])).content.decode()
    assert "overrode" in page and "Accuracy: 5 → <strong>2</strong>" in page
    assert "Satisfied → <strong>Max iterations reached</strong>" in page
    # The verdict that counts is the reviewer's, wherever the evaluation shows.
    assert "Reviewer: Max iterations reached" in page and "Grader: Satisfied" in page
    queue = bob_client.get(reverse("review:queue")).content.decode()
    assert "data-reviewed-verdict>Max iterations reached<" in queue
    assert "the grader said satisfied" in queue
    assert "<th>Verdict</th>" in queue and "<th>Grader verdict</th>" not in queue


def test_out_of_range_override_is_a_field_error(bob_client, evaluation):
    url = reverse("review:evaluation-review", args=[evaluation.pk])
    response = bob_client.post(url, {"decision": "override", "score_accuracy": "9"})
    assert response.status_code == 400
    assert b"less than or equal to 5" in response.content
    assert not HumanReview.objects.exists()


def test_a_score_below_its_minimum_cannot_be_called_satisfied(bob_client, evaluation):
    url = reverse("review:evaluation-review", args=[evaluation.pk])
    below_minimum = {"decision": "override", "score_accuracy": "1", "verdict": "satisfied"}
    response = bob_client.post(url, below_minimum)
    assert response.status_code == 400
    assert "Accuracy: 1 is below its minimum of 3, so the output cannot be Satisfied" in (
        response.content.decode()
    )
    assert not HumanReview.objects.exists()
    # The same low score with the verdict it deserves is a review like any other.
    response = bob_client.post(url, {**below_minimum, "verdict": "max_iterations_reached"})
    assert response.status_code == 302
    # Coming back, the form starts from that review, not from the grader's scores.
    page = bob_client.get(reverse("review:evaluation", args=[evaluation.pk])).content.decode()
    assert 'name="score_accuracy" value="1"' in page
    assert '<option value="max_iterations_reached" selected>' in page


def test_no_review_form_for_a_grader_error(bob_client, team_a, rubric):
    evaluation = services.evaluation_create(team=team_a, rubric=rubric, task="t")
    services.iteration_record_grader_error(
        evaluation=evaluation, output="o", error="the grader timed out", attempts=3
    )
    response = bob_client.get(reverse("review:evaluation", args=[evaluation.pk]))
    assert b"the grader timed out" in response.content
    assert b'id="agree-button"' not in response.content
    url = reverse("review:evaluation-review", args=[evaluation.pk])
    response = bob_client.post(url, {"decision": "agree"}, follow=True)
    assert not HumanReview.objects.exists()
    assert b"Only a finished, graded evaluation can be reviewed" in response.content


def test_reviewer_assigns(bob_client, bob, alice, evaluation, member_of_team_a):
    url = reverse("review:evaluation-assign", args=[evaluation.pk])
    assert bob_client.post(url, {"assignee": "alice"}).status_code == 302
    evaluation.refresh_from_db()
    assert evaluation.assigned_to == alice
    member_of_team_a(Role.VIEWER)
    response = bob_client.post(url, {"assignee": "viewer-of-a"})
    assert response.status_code == 400  # a viewer is not offered and cannot be chosen
    evaluation.refresh_from_db()
    assert evaluation.assigned_to == alice


def test_previous_and_next_follow_the_queue_filters(bob_client, team_a, rubric):
    first = graded_evaluation(team_a, rubric, [grade()])
    graded_evaluation(team_a, rubric, [grade(1, 1, 0), grade(1, 1, 0)])  # filtered out
    third = graded_evaluation(team_a, rubric, [grade()])
    response = bob_client.get(reverse("review:evaluation", args=[third.pk]) + "?verdict=satisfied")
    assert response.context["next_url"] == (
        reverse("review:evaluation", args=[first.pk]) + "?verdict=satisfied"
    )
    assert response.context["previous_url"] == ""
    assert b'data-next-url="/review/evaluations/' in response.content
