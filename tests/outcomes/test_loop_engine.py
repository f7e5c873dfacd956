"""The outcome loop inside the run engine: the worker answers, a grader thread grades it from a
fresh context, the worker revises from the feedback, and the run ends with the verdict. Every
model call is an engine step executed against the in-process simulator."""

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from agentops.outcomes import services as outcomes
from agentops.outcomes.demo import DEMO_RUBRIC
from agentops.outcomes.grading import GRADE_TOOL_NAME
from agentops.outcomes.loop import run_start_graded
from agentops.outcomes.models import EvaluationStatus, Verdict
from agentops.runs import services as engine
from agentops.runs.models import RunStatus, StepKind, StepStatus, ThreadRole, ThreadStatus

pytestmark = pytest.mark.django_db

TASK = "A customer asks why their refund has not arrived yet. Reply to them."
WORKER_SECRET = "INTERNAL-NOTE-7731"


@pytest.fixture
def rubric(team_a, alice):
    return outcomes.rubric_create(team=team_a, actor=alice, **DEMO_RUBRIC)


@pytest.fixture
def worker(make_agent):
    agent = make_agent(name="Support")
    version = agent.current_version
    version.system_prompt = f"You answer customers of Acme Bank. {WORKER_SECRET}"
    version.save(update_fields=["system_prompt"])
    return agent


def _grader_bodies(sim):
    return [b for b in sim.bodies() if (b.get("tool_choice") or {}).get("name") == GRADE_TOOL_NAME]


def test_the_worker_revises_then_passes(worker, rubric, drain, sim, alice):
    run = run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice)
    evaluation = run.evaluation
    assert evaluation.status == EvaluationStatus.RUNNING
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    evaluation.refresh_from_db()
    assert evaluation.verdict == Verdict.SATISFIED
    assert evaluation.status == EvaluationStatus.FINISHED
    first, second = evaluation.iterations.order_by("number")
    assert first.verdict == Verdict.NEEDS_REVISION and second.verdict == Verdict.SATISFIED
    assert "Addressed: accuracy" in second.output
    assert run.output == second.output
    # Worker, grader, worker, grader: four model steps, two grader threads.
    graders = run.threads.filter(role=ThreadRole.GRADER).order_by("pk")
    assert graders.count() == 2
    assert all(t.status == ThreadStatus.SUCCEEDED for t in graders)
    lead = run.threads.get(role=ThreadRole.LEAD)
    assert lead.status == ThreadStatus.SUCCEEDED and lead.turns == 2
    assert "Grader's feedback:" in lead.messages[2]["content"]
    # Usage is kept per iteration and the run's totals count the grader's calls too.
    assert first.worker_output_tokens > 0 and first.grader_input_tokens > 0
    steps = run.steps.filter(kind=StepKind.MODEL_CALL)
    assert steps.count() == run.model_calls == 4
    assert run.input_tokens == sum(s.input_tokens for s in steps)
    grader_steps = steps.filter(thread__role=ThreadRole.GRADER).order_by("pk")
    assert first.grader_input_tokens == grader_steps[0].input_tokens
    assert grader_steps[0].request["model"] == DEMO_RUBRIC["grader_model"]


def test_the_grader_sees_task_rubric_and_output_only(worker, rubric, drain, sim, alice):
    run = drain(run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice))
    outputs = list(run.evaluation.iterations.order_by("number").values_list("output", flat=True))
    graded = _grader_bodies(sim)
    assert len(graded) == len(outputs) == 2
    for body, output in zip(graded, outputs, strict=True):
        assert body["messages"] == [
            {"role": "user", "content": f"<task>\n{TASK}\n</task>\n\n<output>\n{output}\n</output>"}
        ]
        # The simulated worker quotes its instructions in its answer, so the secret may be in
        # the output; nowhere else (system prompt, tools) does the worker's context appear.
        assert WORKER_SECRET not in json.dumps({**body, "messages": None})
        assert "Support reply quality" in body["system"]
        assert [tool["name"] for tool in body["tools"]] == [GRADE_TOOL_NAME]
    # The second grading does not carry the first draft on its own or the feedback turn.
    assert "Grader's feedback:" not in json.dumps(graded[1])
    worker_bodies = [b for b in sim.bodies() if b not in graded]
    assert WORKER_SECRET in worker_bodies[0]["system"]


def test_the_cap_ends_the_run_with_max_iterations_reached(worker, team_a, alice, drain, sim):
    strict = outcomes.rubric_create(
        team=team_a, actor=alice, **{**DEMO_RUBRIC, "name": "Strict", "max_iterations": 1}
    )
    run = drain(run_start_graded(rubric=strict, agent=worker, input=TASK, actor=alice))
    assert run.status == RunStatus.SUCCEEDED
    assert run.evaluation.verdict == Verdict.MAX_ITERATIONS_REACHED
    assert run.evaluation.iterations.count() == 1
    assert run.model_calls == 2


def test_a_malformed_grader_is_retried_then_a_grader_error(
    worker,
    rubric,
    drain,
    sim,
    alice,
    settings,
):
    settings.AGENTOPS_GRADER_ATTEMPTS = 3
    run = drain(
        run_start_graded(
            rubric=rubric, agent=worker, input=f"{TASK} [sim:grader_malformed]", actor=alice
        )
    )
    # The run succeeded: its output stands, the evaluation says the grader failed.
    assert run.status == RunStatus.SUCCEEDED
    assert run.output
    evaluation = run.evaluation
    assert evaluation.verdict == Verdict.GRADER_ERROR
    assert "no score for: tone" in evaluation.error
    iteration = evaluation.iterations.get()
    assert iteration.grader_attempts == 3 and not iteration.scores.exists()
    assert len(_grader_bodies(sim)) == 3
    grader = run.threads.get(role=ThreadRole.GRADER)
    assert grader.status == ThreadStatus.FAILED
    assert grader.steps.count() == 3


def test_a_failing_grader_call_is_retried_then_a_grader_error(
    worker,
    rubric,
    drain,
    sim,
    alice,
    settings,
):
    settings.AGENTOPS_GRADER_ATTEMPTS = 2
    run = run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice)
    engine.step_execute(step_id=run.steps.get().pk)  # the worker's answer
    sim.fail_next(status=400, times=2)  # a permanent error, twice
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.evaluation.verdict == Verdict.GRADER_ERROR
    assert run.evaluation.iterations.get().grader_attempts == 2
    grader_steps = run.steps.filter(thread__role=ThreadRole.GRADER)
    assert [s.status for s in grader_steps] == [StepStatus.FAILED, StepStatus.FAILED]


def test_a_rubric_that_does_not_apply_fails(worker, rubric, drain, sim, alice):
    run = drain(
        run_start_graded(
            rubric=rubric,
            agent=worker,
            input="Write a poem. [sim:rubric_does_not_apply]",
            actor=alice,
        )
    )
    assert run.status == RunStatus.SUCCEEDED
    assert run.evaluation.verdict == Verdict.FAILED
    assert run.evaluation.iterations.get().applies is False


def test_cancel_mid_loop_interrupts_the_evaluation(worker, rubric, sim, alice):
    run = run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice)
    with engine.inline_execution():
        engine.step_execute(step_id=run.steps.get().pk)  # worker answers
        grader_step = run.steps.get(thread__role=ThreadRole.GRADER)
        engine.step_execute(step_id=grader_step.pk)  # needs revision: the worker's turn queued
    queued = run.steps.get(status=StepStatus.QUEUED)
    assert queued.thread.role == ThreadRole.LEAD
    engine.run_cancel(run=run, actor=alice)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    evaluation = run.evaluation
    assert evaluation.verdict == Verdict.INTERRUPTED
    assert evaluation.iterations.count() == 1  # the graded iteration is kept
    queued.refresh_from_db()
    assert queued.status == StepStatus.CANCELLED


def test_a_budget_stop_mid_loop_interrupts_the_evaluation(worker, rubric, drain, sim, alice):
    run = run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice, budget_tokens=1)
    run = drain(run)
    assert run.status == RunStatus.BUDGET_REACHED
    assert run.evaluation.verdict == Verdict.INTERRUPTED
    assert "budget" in run.evaluation.error


def test_archived_or_foreign_rubrics_are_refused(worker, rubric, team_b, bob, alice):
    from django.core.exceptions import ValidationError

    foreign = outcomes.rubric_create(team=team_b, actor=bob, **DEMO_RUBRIC)
    with pytest.raises(ValidationError, match="another team"):
        run_start_graded(rubric=foreign, agent=worker, input=TASK, actor=alice)
    outcomes.rubric_set_archived(rubric=rubric, actor=alice, archived=True)
    rubric.refresh_from_db()
    with pytest.raises(ValidationError, match="archived"):
        run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice)
    assert not worker.runs.exists()  # one transaction: no run without its evaluation


def test_a_run_without_rubric_is_not_graded(worker, drain, sim, alice):
    run = drain(engine.run_start(agent=worker, input=TASK, actor=alice))
    assert run.status == RunStatus.SUCCEEDED
    assert not run.threads.filter(role=ThreadRole.GRADER).exists()
    assert not _grader_bodies(sim)


def test_a_graded_run_and_its_lead_are_marked_graded_and_no_other_thread(
    worker, rubric, drain, sim, alice
):
    run = drain(run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice))
    assert run.has_graded_threads and not run.in_workflow
    assert list(run.threads.filter(is_graded=True)) == [run.threads.get(role=ThreadRole.LEAD)]
    plain = drain(engine.run_start(agent=worker, input=TASK, actor=alice))
    assert not plain.has_graded_threads
    assert not plain.threads.filter(is_graded=True).exists()


# --- run_agent --rubric ------------------------------------------------------------------------


def test_run_agent_with_a_rubric_prints_the_verdict(worker, rubric, sim, capsys):
    call_command("run_agent", worker.slug, "--input", TASK, "--inline", "--rubric", rubric.slug)
    out = capsys.readouterr().out
    assert "verdict: satisfied" in out


def test_run_agent_exits_3_when_not_satisfied(worker, team_a, alice, sim, capsys):
    strict = outcomes.rubric_create(
        team=team_a, actor=alice, **{**DEMO_RUBRIC, "name": "Strict", "max_iterations": 1}
    )
    with pytest.raises(SystemExit) as exit_info:
        call_command("run_agent", worker.slug, "--input", TASK, "--inline", "--rubric", strict.slug)
    assert exit_info.value.code == 3
    assert "verdict: max_iterations_reached" in capsys.readouterr().out


def test_run_agent_refuses_an_unknown_rubric(worker, sim):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No rubric 'nope'"):
        call_command("run_agent", worker.slug, "--input", TASK, "--inline", "--rubric", "nope")
    assert not worker.runs.exists()


# --- the start form and the pages ---------------------------------------------------------------


def test_the_start_form_starts_a_graded_run(worker, rubric, alice_client):
    page = alice_client.get(reverse("agents:detail", args=[worker.pk]))
    assert f'<option value="{rubric.pk}">{rubric.name}</option>' in page.content.decode()
    response = alice_client.post(
        reverse("runs:start", args=[worker.pk]),
        {"input": TASK, "max_turns": 20, "max_continuations": 0, "rubric": rubric.pk},
    )
    run = worker.runs.get()
    assert response.status_code == 302
    assert run.evaluation.rubric_version == rubric.current_version


def test_the_start_form_refuses_another_teams_or_archived_rubric(
    worker, rubric, team_b, bob, alice, alice_client
):
    foreign = outcomes.rubric_create(team=team_b, actor=bob, **DEMO_RUBRIC)
    outcomes.rubric_set_archived(rubric=rubric, actor=alice, archived=True)
    for choice in (foreign.pk, rubric.pk):
        response = alice_client.post(
            reverse("runs:start", args=[worker.pk]),
            {"input": TASK, "max_turns": 20, "max_continuations": 0, "rubric": choice},
        )
        assert response.status_code == 400
        assert "Select a valid choice" in response.content.decode()
    assert not worker.runs.exists()


def test_the_run_page_shows_the_evaluation_and_links_both_ways(
    worker,
    rubric,
    drain,
    sim,
    alice,
    alice_client,
):
    run = drain(run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice))
    evaluation = run.evaluation
    page = alice_client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert 'id="run-verdict">Satisfied<' in page
    assert reverse("review:evaluation", args=[evaluation.pk]) in page
    assert "Iteration 2" in page and "100.0%" in page
    assert ">Grader<" in page or "Grader\n" in page
    review = alice_client.get(reverse("review:evaluation", args=[evaluation.pk])).content.decode()
    assert reverse("runs:detail", args=[run.pk]) in review
    # A reviewer's override is the verdict the run page shows from then on.
    from agentops.outcomes.services import evaluation_review

    evaluation_review(evaluation=evaluation, reviewer=alice, verdict="failed")
    page = alice_client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert 'id="run-verdict" data-reviewed-verdict>Rubric does not apply<' in page
    assert "the grader said satisfied" in page


def test_compare_shows_each_runs_grade(worker, rubric, drain, sim, alice, bob_client):
    graded = drain(run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice))
    plain = drain(engine.run_start(agent=worker, input=TASK, actor=alice))
    page = bob_client.get(reverse("runs:compare"), {"a": graded.pk, "b": plain.pk}).text
    first, second = (
        page.split('id="compare-grade-1"')[1].split("</p>")[0],
        page.split('id="compare-grade-2"')[1].split("</p>")[0],
    )
    assert f"Graded by {rubric.name}" in first and ">Satisfied<" in first
    assert "score 100.0% after 2 iterations" in first
    assert reverse("review:evaluation", args=[graded.evaluation.pk]) in first
    assert "Not graded." in second
    # A reviewer's override is the verdict that counts here too.
    from agentops.outcomes.services import evaluation_review

    evaluation_review(evaluation=graded.evaluation, reviewer=alice, verdict="failed")
    page = bob_client.get(reverse("runs:compare"), {"a": graded.pk, "b": plain.pk}).text
    assert "data-reviewed-verdict>Rubric does not apply<" in page
    assert "the grader said satisfied" in page


def test_the_run_page_of_a_graded_run_is_denied_to_others(
    worker,
    rubric,
    drain,
    sim,
    alice,
    charlie_client,
):
    run = drain(run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice))
    assert charlie_client.get(reverse("runs:detail", args=[run.pk])).status_code == 404


# --- demo ---------------------------------------------------------------------------------------


def test_the_demo_grades_runs_for_each_path_and_reviews_some(team_a, alice, bob, sim):
    from agentops.agents.demo import seed_demo_data as seed_agents
    from agentops.outcomes.demo import seed_demo_data
    from agentops.outcomes.models import HumanReview

    seed_agents(team=team_a, owner=alice, reviewer=bob)
    seed_demo_data(team=team_a, owner=alice, reviewer=bob)
    seed_demo_data(team=team_a, owner=alice, reviewer=bob)  # idempotent
    verdicts = sorted(
        outcomes.Evaluation.objects.filter(team=team_a).values_list("verdict", flat=True)
    )
    assert verdicts == sorted(
        [Verdict.SATISFIED, Verdict.MAX_ITERATIONS_REACHED, Verdict.FAILED, Verdict.GRADER_ERROR]
    )
    assert all(
        e.run.status == RunStatus.SUCCEEDED for e in outcomes.Evaluation.objects.filter(team=team_a)
    )
    reviews = HumanReview.objects.filter(evaluation__team=team_a)
    assert reviews.count() == 2
    assert reviews.filter(agreed=False).count() == 1


# --- schedules ------------------------------------------------------------------------------------


def _schedule_data(worker, rubric):
    return {
        "name": "Nightly support check",
        "workflow": "",
        "agent": worker.pk,
        "rubric": rubric.pk,
        "input": TASK,
        "kind": "interval",
        "every_minutes": 60,
        "timezone": "UTC",
        "overlap": "allow",
    }


def test_an_agent_schedule_with_a_rubric_starts_graded_runs(worker, rubric, team_a, alice, drain):
    from agentops.workflows.services import schedule_create, schedule_fire

    schedule = schedule_create(
        team=team_a,
        actor=alice,
        name="Hourly",
        agent=worker,
        rubric=rubric,
        input=TASK,
        kind="interval",
        every_minutes=60,
    )
    fire = schedule_fire(schedule_id=schedule.pk)
    run = drain(fire.run)
    assert run.status == RunStatus.SUCCEEDED
    assert run.evaluation.verdict == Verdict.SATISFIED


def test_a_schedule_rubric_must_be_the_teams_and_for_an_agent(
    worker, rubric, team_a, team_b, alice, bob
):
    from django.core.exceptions import ValidationError

    from agentops.workflows.services import schedule_create

    foreign = outcomes.rubric_create(team=team_b, actor=bob, **DEMO_RUBRIC)
    values = dict(team=team_a, actor=alice, name="Hourly", input=TASK, kind="interval")
    with pytest.raises(ValidationError) as error:
        schedule_create(agent=worker, rubric=foreign, every_minutes=60, **values)
    assert "rubric" in error.value.message_dict


def test_the_schedule_form_takes_a_rubric(worker, rubric, alice_client, bob_client):
    from agentops.workflows.models import Schedule

    url = reverse("workflows:schedule-create")
    form = alice_client.get(url).content.decode()
    assert f'<option value="{rubric.pk}">{rubric.name}</option>' in form
    assert bob_client.post(url, _schedule_data(worker, rubric)).status_code == 403
    response = alice_client.post(url, _schedule_data(worker, rubric))
    assert response.status_code == 302
    schedule = Schedule.objects.get()
    assert schedule.rubric == rubric
    page = alice_client.get(reverse("workflows:schedule", args=[schedule.pk])).content.decode()
    assert reverse("rubrics:detail", args=[rubric.pk]) in page


def test_an_evaluation_ended_elsewhere_lets_the_run_finish(worker, rubric, drain, sim, alice):
    run = run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice)
    engine.step_execute(step_id=run.steps.get().pk)  # the worker answers; grading is queued
    outcomes.evaluation_finish(evaluation=run.evaluation, verdict=Verdict.FAILED)
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED
    assert run.output
    assert run.threads.get(role=ThreadRole.GRADER).status == ThreadStatus.CANCELLED


def test_the_run_page_of_a_run_stopped_while_grading_a_revision(
    worker, rubric, sim, alice, alice_client
):
    run = run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice)
    with engine.inline_execution():
        engine.step_execute(step_id=run.steps.get().pk)  # the first draft
        engine.step_execute(step_id=run.steps.get(thread__role=ThreadRole.GRADER).pk)
        revision = run.steps.get(status=StepStatus.QUEUED)
        engine.step_execute(step_id=revision.pk)  # the revision, its grading queued
    engine.run_cancel(run=run, actor=alice)
    run.refresh_from_db()
    first = run.evaluation.iterations.get()
    assert run.output.strip() != first.output.strip()

    page = alice_client.get(reverse("runs:detail", args=[run.pk])).text
    assert "A revision the grader did not get to: the run ended first." in page
    assert "The score below is for iteration 1's output." in page
    # The transcript reads as it happened: draft, grade, revision, the grade it never got.
    kinds = [
        "Grader" if step.thread.role == ThreadRole.GRADER else "Model"
        for step in run.steps.filter(kind=StepKind.MODEL_CALL).order_by("pk")
    ]
    assert kinds == ["Model", "Grader", "Model", "Grader"]
    shown = [page.index(f'id="step-{step.pk}"') for step in run.steps.order_by("pk")]
    assert shown == sorted(shown)


def test_a_graded_run_s_page_says_nothing_of_ungraded_drafts_when_the_last_was_graded(
    worker, rubric, drain, sim, alice, alice_client
):
    run = drain(run_start_graded(rubric=rubric, agent=worker, input=TASK, actor=alice))
    assert run.status == RunStatus.SUCCEEDED
    page = alice_client.get(reverse("runs:detail", args=[run.pk])).text
    assert 'id="ungraded-output"' not in page
