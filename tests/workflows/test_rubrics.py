"""Rubrics in workflows: a specialist with a rubric runs its own outcome loop before its answer
goes back to the lead, and a workflow (or a workflow schedule) can grade the final result.
Every model call, graders' included, is an engine step against the in-process simulator."""

from importlib import import_module

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from agentops.llm.models import ModelCallRecord
from agentops.outcomes import services as outcomes
from agentops.outcomes.demo import DEMO_RUBRIC
from agentops.outcomes.loop import run_start_graded
from agentops.outcomes.models import Evaluation, EvaluationStatus, Verdict
from agentops.runs import services as engine
from agentops.runs.models import (
    Run,
    RunStatus,
    Step,
    StepKind,
    StepStatus,
    Thread,
    ThreadRole,
    ThreadStatus,
)
from agentops.workflows.models import Delegation, DelegationStatus, Workflow, WorkflowMode
from agentops.workflows.services import (
    Specialist,
    schedule_create,
    schedule_fire,
    thread_cancel,
    version_diff,
    workflow_create,
    workflow_run_start,
    workflow_update,
)
from tests.workflows.test_views import _form_data, schedule_form_data

pytestmark = pytest.mark.django_db

TASK = "Write a short brief on heat pumps for a customer."


@pytest.fixture
def rubric(team_a, alice):
    return outcomes.rubric_create(team=team_a, actor=alice, **DEMO_RUBRIC)


@pytest.fixture
def strict_rubric(team_a, alice):
    # The simulated worker's first answer never addresses every criterion: with one try,
    # the loop ends at max_iterations_reached.
    return outcomes.rubric_create(
        team=team_a, actor=alice, **{**DEMO_RUBRIC, "name": "Strict", "max_iterations": 1}
    )


@pytest.fixture
def graded_workflow(team_a, alice, lead, specialists):
    def make(*, rubrics, final=None, mode=WorkflowMode.DELEGATE, name="Graded desk"):
        return workflow_create(
            team=team_a,
            actor=alice,
            name=name,
            lead_agent=lead,
            mode=mode,
            rubric=final,
            roster=[
                Specialist(agent=agent, role_description=f"the {agent.name}.", rubric=rubric)
                for agent, rubric in zip(specialists, rubrics, strict=False)
            ],
        )

    return make


def _lead(run):
    return run.threads.get(role=ThreadRole.LEAD)


def _result_for(run, delegation):
    results = _lead(run).messages[2]["content"]
    return next(r for r in results if r["tool_use_id"] == delegation.step.tool_use_id)


def _execute_until(run, condition, limit=60):
    """Execute the run's queued steps one at a time until `condition()` holds."""
    with engine.inline_execution():
        for _ in range(limit):
            if condition():
                return
            step = Step.objects.filter(run=run, status=StepStatus.QUEUED).order_by("id").first()
            assert step is not None, "the run stopped before the condition held"
            engine.step_execute(step_id=step.pk)
    raise AssertionError("condition never held")


def test_a_specialist_with_a_rubric_revises_before_the_lead_gets_its_answer(
    graded_workflow, rubric, specialists, sim, drain
):
    researcher, writer = specialists[:2]
    run = workflow_run_start(workflow=graded_workflow(rubrics=[rubric, None]), input=TASK)
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error

    graded = Delegation.objects.get(run=run, roster_entry__agent=researcher)
    evaluation = graded.child.evaluation
    assert evaluation.run is None  # the run's own evaluation would be its final result's
    assert evaluation.task == graded.task
    assert evaluation.agent == researcher
    assert evaluation.verdict == Verdict.SATISFIED
    first, second = evaluation.iterations.order_by("number")
    assert first.verdict == Verdict.NEEDS_REVISION and second.verdict == Verdict.SATISFIED
    # The lead got the revision, the output that passed, not the first draft.
    result = _result_for(run, graded)
    assert result["content"] == second.output == graded.child.output
    assert result["is_error"] is False
    assert "Addressed:" in result["content"]

    graders = run.threads.filter(role=ThreadRole.GRADER).order_by("pk")
    assert [g.graded_thread_id for g in graders] == [graded.child_id, graded.child_id]
    assert all(g.parent_id is None and g.status == ThreadStatus.SUCCEEDED for g in graders)
    # The lead's synthesis waited for the last grading: its second model call came after.
    last_grader_step = Step.objects.filter(thread=graders[1]).latest("finished_at")
    synthesis = _lead(run).steps.filter(kind=StepKind.MODEL_CALL).order_by("pk").last()
    assert synthesis.claimed_at >= last_grader_step.finished_at

    ungraded = Delegation.objects.get(run=run, roster_entry__agent=writer)
    assert not Evaluation.objects.filter(thread=ungraded.child).exists()
    assert not Evaluation.objects.filter(run=run).exists()
    # The specialist's grading is charged to the specialist, as its own calls are.
    grader_calls = ModelCallRecord.objects.filter(label=f"run {run.pk} grader")
    assert set(grader_calls.values_list("agent", flat=True)) == {researcher.pk}
    # Iteration usage counts the specialist's own calls only, not the lead's.
    specialist_calls = graded.child.steps.filter(kind=StepKind.MODEL_CALL).count()
    assert specialist_calls == 2
    assert first.worker_input_tokens == graded.child.steps.order_by("pk")[0].input_tokens


def test_a_specialist_that_never_satisfies_its_rubric_answers_with_a_note(
    graded_workflow, strict_rubric, specialists, sim, drain
):
    workflow = graded_workflow(rubrics=[strict_rubric], mode=WorkflowMode.FAN_OUT)
    run = drain(workflow_run_start(workflow=workflow, input=TASK))
    assert run.status == RunStatus.SUCCEEDED, run.error
    graded = Delegation.objects.get(run=run, roster_entry__agent=specialists[0])
    assert graded.status == DelegationStatus.SUCCEEDED
    evaluation = graded.child.evaluation
    assert evaluation.verdict == Verdict.MAX_ITERATIONS_REACHED
    result = _result_for(run, graded)
    assert result["is_error"] is False  # the answer stands; the lead decides what to do
    assert result["content"].startswith(graded.child.output)
    assert "did not satisfy the rubric Strict after 1 attempt(s)" in result["content"]


def test_a_grader_error_on_a_specialist_lets_its_answer_stand(
    graded_workflow, rubric, specialists, sim, drain
):
    workflow = graded_workflow(rubrics=[rubric], mode=WorkflowMode.FAN_OUT)
    run = drain(workflow_run_start(workflow=workflow, input=f"{TASK} [sim:grader_malformed]"))
    assert run.status == RunStatus.SUCCEEDED, run.error
    graded = Delegation.objects.get(run=run)
    assert graded.child.evaluation.verdict == Verdict.GRADER_ERROR
    assert "could not be graded against the rubric" in _result_for(run, graded)["content"]


def test_the_final_result_is_graded_and_the_lead_revises(
    graded_workflow, rubric, specialists, sim, drain
):
    workflow = graded_workflow(rubrics=[None, None], final=rubric)
    run = workflow_run_start(workflow=workflow, input=TASK)
    evaluation = run.evaluation
    assert evaluation.thread == _lead(run)
    assert evaluation.agent == workflow.current_version.lead_agent
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    evaluation.refresh_from_db()
    assert evaluation.verdict == Verdict.SATISFIED
    assert evaluation.iterations_count == 2
    assert run.output == evaluation.iterations.get(number=2).output
    lead = _lead(run)
    graders = run.threads.filter(role=ThreadRole.GRADER)
    assert graders.count() == 2
    assert {g.graded_thread_id for g in graders} == {lead.pk}
    # The lead's revision turn carries the grader's feedback.
    assert "needs revision" in lead.messages[-2]["content"]


def test_cancelling_a_specialist_while_it_is_graded_stops_its_grader(
    graded_workflow, rubric, specialists, sim, drain, alice
):
    workflow = graded_workflow(rubrics=[rubric, None])
    run = workflow_run_start(workflow=workflow, input=TASK)
    graders = run.threads.filter(role=ThreadRole.GRADER)
    _execute_until(run, graders.exists)
    grader = graders.get()
    child = grader.graded_thread
    assert grader.steps.get().status == StepStatus.QUEUED

    thread_cancel(thread=child, actor=alice)
    grader.refresh_from_db()
    assert grader.status == ThreadStatus.CANCELLED
    assert grader.steps.get().status == StepStatus.CANCELLED
    evaluation = Evaluation.objects.get(thread=child)
    assert evaluation.verdict == Verdict.INTERRUPTED
    assert evaluation.status == EvaluationStatus.FINISHED

    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    result = _result_for(run, child.delegation)
    assert result["is_error"] is True and "was cancelled" in result["content"]


def test_a_grader_cannot_be_cancelled_on_its_own(graded_workflow, rubric, sim, alice, alice_client):
    run = workflow_run_start(workflow=graded_workflow(rubrics=[rubric]), input=TASK)
    graders = run.threads.filter(role=ThreadRole.GRADER)
    _execute_until(run, graders.exists)
    grader = graders.get()
    page = alice_client.get(reverse("workflows:thread", args=[run.pk, grader.pk])).text
    assert "Cancel" not in page
    specialist = alice_client.get(
        reverse("workflows:thread", args=[run.pk, grader.graded_thread_id])
    ).text
    assert "Cancel this sub-agent" in specialist
    with pytest.raises(ValidationError, match="cancel that thread"):
        thread_cancel(thread=graders.get(), actor=alice)
    run.refresh_from_db()
    assert run.is_active


def test_cancelling_the_run_interrupts_every_running_evaluation(
    graded_workflow, rubric, sim, alice
):
    workflow = graded_workflow(rubrics=[rubric, rubric, rubric], final=rubric)
    workflow.current_version.mode = WorkflowMode.FAN_OUT
    workflow.current_version.save(update_fields=["mode"])
    run = workflow_run_start(workflow=workflow, input=TASK)
    graders = run.threads.filter(role=ThreadRole.GRADER)
    _execute_until(run, lambda: graders.count() == 2)
    engine.run_cancel(run=run, actor=alice)
    evaluations = Evaluation.objects.filter(thread__run=run)
    assert evaluations.count() == 4  # three specialists and the final result
    assert set(evaluations.values_list("verdict", flat=True)) == {Verdict.INTERRUPTED}
    assert not Step.objects.filter(run=run, status=StepStatus.QUEUED).exists()


def test_cancelling_a_run_graded_only_in_a_specialist_interrupts_that_evaluation(
    graded_workflow, rubric, sim, alice
):
    # The run was not graded when it started: the delegation marks it, under its lock.
    run = workflow_run_start(workflow=graded_workflow(rubrics=[rubric, None]), input=TASK)
    assert not run.has_graded_threads
    graders = run.threads.filter(role=ThreadRole.GRADER)
    _execute_until(run, graders.exists)
    run.refresh_from_db()
    assert run.in_workflow and run.has_graded_threads
    engine.run_cancel(run=run, actor=alice)
    evaluation = Evaluation.objects.get(thread__run=run)
    assert evaluation.thread.is_graded and evaluation.thread.parent_id is not None
    assert evaluation.verdict == Verdict.INTERRUPTED
    assert evaluation.status == EvaluationStatus.FINISHED


def test_an_archived_specialist_rubric_refuses_the_delegation(
    graded_workflow, rubric, specialists, sim, drain, alice
):
    workflow = graded_workflow(rubrics=[rubric, None])
    outcomes.rubric_set_archived(rubric=rubric, actor=alice, archived=True)
    run = drain(workflow_run_start(workflow=workflow, input=TASK))
    assert run.status == RunStatus.SUCCEEDED, run.error
    results = _lead(run).messages[2]["content"]
    assert [r["is_error"] for r in results] == [True, False]
    assert "rubric Support reply quality is archived" in results[0]["content"]
    assert not Evaluation.objects.exists()


def test_rubrics_are_part_of_the_version_and_checked(
    graded_workflow, rubric, specialists, lead, team_a, team_b, alice, bob
):
    workflow = graded_workflow(rubrics=[None])
    roster = [Specialist(agent=specialists[0], role_description="the Researcher.", rubric=rubric)]
    values = dict(workflow=workflow, actor=alice, name=workflow.name, lead_agent=lead)
    version = workflow_update(roster=roster, **values)
    assert version.number == 2
    assert version.snapshot()["roster"][0]["rubric"] == rubric.slug
    assert workflow_update(roster=roster, **values) is None  # nothing changed
    assert workflow_update(roster=roster, rubric=rubric, **values).snapshot()["rubric"] == (
        rubric.slug
    )

    foreign = outcomes.rubric_create(team=team_b, actor=bob, **DEMO_RUBRIC)
    with pytest.raises(ValidationError) as error:
        workflow_update(roster=roster, rubric=foreign, **values)
    assert error.value.message_dict["rubric"] == ["Choose a rubric of this team."]
    foreign_roster = [
        Specialist(agent=specialists[0], role_description="the Researcher.", rubric=foreign)
    ]
    with pytest.raises(ValidationError) as error:
        workflow_update(roster=foreign_roster, **values)
    assert error.value.message_dict["roster"] == ["Choose a rubric of this team."]
    outcomes.rubric_set_archived(rubric=rubric, actor=alice, archived=True)
    rubric.refresh_from_db()
    with pytest.raises(ValidationError) as error:
        workflow_update(roster=roster, rubric=rubric, **{**values, "name": "Renamed"})
    assert "archived" in error.value.message_dict["rubric"][0]
    assert "archived" in error.value.message_dict["roster"][0]


def test_the_version_comparison_shows_rubric_changes(
    graded_workflow, rubric, specialists, lead, alice
):
    workflow = graded_workflow(rubrics=[None])
    first = workflow.current_version
    values = dict(workflow=workflow, actor=alice, name=workflow.name, lead_agent=lead)
    plain = [Specialist(agent=specialists[0], role_description="the Researcher.")]
    graded = [Specialist(agent=specialists[0], role_description="the Researcher.", rubric=rubric)]
    final = workflow_update(roster=plain, rubric=rubric, **values)
    assert ("Rubric for the final result", "(not set)", rubric.slug) in version_diff(first, final)
    specialist = workflow_update(roster=graded, rubric=rubric, **values)
    [(label, before, after)] = version_diff(final, specialist)
    assert label == "Roster" and before != after
    assert after.endswith(f"(graded by {rubric.slug})")


def test_starting_with_an_archived_final_rubric_is_refused(graded_workflow, rubric, alice):
    workflow = graded_workflow(rubrics=[None], final=rubric)
    outcomes.rubric_set_archived(rubric=rubric, actor=alice, archived=True)
    with pytest.raises(ValidationError, match="archived"):
        workflow_run_start(workflow=workflow, input=TASK)
    assert not workflow.runs.exists()


def _fired_with_rubric(workflow, rubric, actor):
    """The run an hourly schedule of `workflow` carrying `rubric` starts when it fires."""
    schedule = schedule_create(
        team=workflow.team,
        actor=actor,
        name="Hourly",
        workflow=workflow,
        input=TASK,
        rubric=rubric,
        kind="interval",
        every_minutes=60,
    )
    return schedule_fire(schedule_id=schedule.pk).run


def test_a_workflow_schedule_with_a_rubric_grades_the_final_result(
    graded_workflow, rubric, strict_rubric, team_a, alice, sim, drain
):
    workflow = graded_workflow(rubrics=[None], final=rubric)
    run = drain(_fired_with_rubric(workflow, strict_rubric, alice))
    assert run.status == RunStatus.SUCCEEDED, run.error
    # The schedule's rubric replaces the workflow's own for the final result.
    assert run.evaluation.rubric_version.rubric == strict_rubric
    assert run.evaluation.verdict == Verdict.MAX_ITERATIONS_REACHED


def test_the_editor_saves_rubrics_and_the_pages_show_grades(
    alice_client, charlie_client, lead, specialists, rubric, sim, drain
):
    data = _form_data(lead, specialists[:2], rubric=rubric.pk, **{"roster-0-rubric": rubric.pk})
    response = alice_client.post(reverse("workflows:create"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    workflow = Workflow.objects.get(name="Research desk")
    version = workflow.current_version
    assert version.rubric == rubric
    assert [e.rubric for e in version.roster.all()] == [rubric, None]
    detail = alice_client.get(reverse("workflows:detail", args=[workflow.pk])).text
    assert "graded by" in detail and rubric.name in detail
    edit = alice_client.get(reverse("workflows:edit", args=[workflow.pk])).text
    assert f'<option value="{rubric.pk}" selected>' in edit

    run = drain(workflow_run_start(workflow=workflow, input=TASK))
    assert run.status == RunStatus.SUCCEEDED, run.error
    tree = alice_client.get(reverse("workflows:run", args=[run.pk])).text
    graded = Evaluation.objects.get(thread__delegation__isnull=False)
    assert f'data-evaluation="{graded.pk}"' in tree
    assert f'data-evaluation="{run.evaluation.pk}"' in tree
    assert tree.count("· grader") == 4  # two gradings of the specialist, two of the lead
    grader = run.threads.filter(role=ThreadRole.GRADER).first()
    page = alice_client.get(reverse("workflows:thread", args=[run.pk, grader.pk])).text
    assert "Grades this thread's answer" in page
    review = alice_client.get(reverse("review:evaluation", args=[graded.pk])).text
    assert reverse("workflows:thread", args=[run.pk, graded.thread_id]) in review
    assert charlie_client.get(reverse("review:evaluation", args=[graded.pk])).status_code == 404


def test_the_editor_refuses_another_teams_rubric(alice_client, lead, specialists, team_b, bob):
    foreign = outcomes.rubric_create(team=team_b, actor=bob, **DEMO_RUBRIC)
    data = _form_data(lead, specialists[:1], **{"roster-0-rubric": foreign.pk})
    response = alice_client.post(reverse("workflows:create"), data)
    assert response.status_code == 400
    assert "Select a valid choice" in response.text


def test_runs_graded_before_threads_were_graded_get_their_lead(
    make_agent, rubric, alice, sim, drain
):
    migration = import_module("agentops.outcomes.migrations.0003_evaluation_thread")
    run = drain(run_start_graded(rubric=rubric, agent=make_agent("Support"), input=TASK))
    lead = _lead(run)
    Evaluation.objects.filter(run=run).update(thread=None)
    run.threads.filter(role=ThreadRole.GRADER).update(graded_thread=None)
    migration.graded_threads(apps, None)
    assert Evaluation.objects.get(run=run).thread == lead
    assert set(
        run.threads.filter(role=ThreadRole.GRADER).values_list("graded_thread", flat=True)
    ) == {lead.pk}


def test_runs_from_before_the_engine_flags_get_them(
    graded_workflow, rubric, make_agent, sim, drain
):
    workflow_runs = import_module("agentops.workflows.migrations.0004_mark_workflow_runs")
    graded = import_module("agentops.outcomes.migrations.0004_mark_graded_threads")
    run = drain(workflow_run_start(workflow=graded_workflow(rubrics=[rubric, None]), input=TASK))
    drain(engine.run_start(agent=make_agent("Plain"), input=TASK))  # stays unmarked
    child = Evaluation.objects.get(thread__run=run).thread
    Run.objects.update(in_workflow=False, has_graded_threads=False)
    Thread.objects.update(is_graded=False)
    workflow_runs.mark_workflow_runs(apps, None)
    graded.mark_graded(apps, None)
    assert list(Run.objects.filter(in_workflow=True)) == [run]
    assert list(Run.objects.filter(has_graded_threads=True)) == [run]
    assert list(Thread.objects.filter(is_graded=True)) == [child]


def test_run_workflow_prints_verdicts_and_exits_3_when_not_satisfied(
    graded_workflow, rubric, strict_rubric, sim, capsys
):
    workflow = graded_workflow(rubrics=[rubric, None])
    with pytest.raises(SystemExit) as exit_code:
        call_command(
            "run_workflow", workflow.slug, "--input", TASK, "--inline", "--rubric", "strict"
        )
    assert exit_code.value.code == 3
    out = capsys.readouterr().out
    assert "researcher: succeeded (verdict: satisfied (finished))" in out
    assert "writer: succeeded\n" in out
    assert out.rstrip().endswith("verdict: max_iterations_reached (finished)")

    call_command("run_workflow", workflow.slug, "--input", TASK, "--inline")
    assert "verdict:" not in capsys.readouterr().out.split("writer: succeeded")[1]
    with pytest.raises(CommandError, match="No rubric 'nope' in team 'team-a'"):
        call_command("run_workflow", workflow.slug, "--input", TASK, "--rubric", "nope")


def test_a_graded_specialist_over_its_budget_ends_its_evaluation(
    graded_workflow, rubric, specialists, sim, drain
):
    # The first answer fits a 1-token budget (it is checked before each call); the revision
    # the grader asks for does not.
    workflow = graded_workflow(rubrics=[rubric], mode=WorkflowMode.FAN_OUT)
    workflow.current_version.child_budget_tokens = 1
    workflow.current_version.save(update_fields=["child_budget_tokens"])
    run = drain(workflow_run_start(workflow=workflow, input=TASK))
    assert run.status == RunStatus.SUCCEEDED, run.error
    delegation = Delegation.objects.get(run=run)
    assert delegation.status == DelegationStatus.BUDGET_REACHED
    evaluation = delegation.child.evaluation
    assert evaluation.verdict == Verdict.INTERRUPTED
    assert evaluation.iterations_count == 1
    assert "budget" in evaluation.error
    assert _result_for(run, delegation)["is_error"] is True


def test_a_workflow_run_over_budget_interrupts_the_final_evaluation(
    graded_workflow, rubric, sim, drain
):
    workflow = graded_workflow(rubrics=[None], final=rubric)
    workflow.current_version.budget_tokens = 1
    workflow.current_version.save(update_fields=["budget_tokens"])
    run = drain(workflow_run_start(workflow=workflow, input=TASK))
    assert run.status == RunStatus.BUDGET_REACHED
    run.evaluation.refresh_from_db()
    assert run.evaluation.verdict == Verdict.INTERRUPTED
    assert "budget" in run.evaluation.error.lower()


def test_a_grader_that_crashes_ends_as_a_grader_error_not_a_failed_run(
    graded_workflow, rubric, sim, drain, monkeypatch
):
    from agentops.outcomes import grading

    def broken(version, grade_input):
        raise RuntimeError("bug in the grade parser")

    monkeypatch.setattr(grading, "parse_grade", broken)
    workflow = graded_workflow(rubrics=[rubric], mode=WorkflowMode.FAN_OUT)
    run = drain(workflow_run_start(workflow=workflow, input=TASK))
    assert run.status == RunStatus.SUCCEEDED, run.error
    delegation = Delegation.objects.get(run=run)
    assert delegation.status == DelegationStatus.SUCCEEDED
    evaluation = delegation.child.evaluation
    assert evaluation.verdict == Verdict.GRADER_ERROR
    assert "bug in the grade parser" in evaluation.error
    graders = run.threads.filter(role=ThreadRole.GRADER).get()
    assert graders.steps.filter(status=StepStatus.FAILED).count() == 3


def test_editing_a_workflow_keeps_an_archived_rubric_and_refuses_it(
    alice_client, graded_workflow, rubric, alice
):
    workflow = graded_workflow(rubrics=[rubric], final=rubric)
    outcomes.rubric_set_archived(rubric=rubric, actor=alice, archived=True)
    url = reverse("workflows:edit", args=[workflow.pk])
    form = alice_client.get(url).text
    selected = f'<option value="{rubric.pk}" selected>{rubric.name} (archived)</option>'
    assert form.count(selected) == 2  # the final result's and the specialist's
    data = _form_data(workflow.current_version.lead_agent, [], name=workflow.name)
    data.update(
        {
            "rubric": rubric.pk,
            "roster-TOTAL_FORMS": 1,
            "roster-0-agent": workflow.current_version.roster.get().agent_id,
            "roster-0-role_description": "the Researcher.",
            "roster-0-rubric": rubric.pk,
        }
    )
    response = alice_client.post(url, data)
    assert response.status_code == 400
    assert response.text.count("is archived") == 2
    assert workflow.versions.count() == 1


# --- reruns -----------------------------------------------------------------------------------


def test_a_rerun_of_a_graded_agent_run_is_graded_by_the_same_rubric(
    make_agent, rubric, alice, sim, drain
):
    original = drain(run_start_graded(rubric=rubric, agent=make_agent("Support"), input=TASK))
    rerun = drain(engine.run_rerun(run=original, actor=alice))
    assert rerun.rerun_of == original
    assert rerun.evaluation.rubric_version.rubric == rubric
    assert rerun.evaluation.created_by == alice
    assert rerun.evaluation.verdict == Verdict.SATISFIED


def test_a_rerun_is_refused_when_its_rubric_was_archived(make_agent, rubric, alice, sim, drain):
    original = drain(run_start_graded(rubric=rubric, agent=make_agent("Support"), input=TASK))
    outcomes.rubric_set_archived(rubric=rubric, actor=alice, archived=True)
    with pytest.raises(ValidationError, match="archived"):
        engine.run_rerun(run=original, actor=alice)
    assert not original.reruns.exists()


def test_a_rerun_of_a_workflow_run_is_a_run_of_the_workflow(
    graded_workflow, rubric, strict_rubric, specialists, team_a, alice, sim, drain
):
    workflow = graded_workflow(rubrics=[rubric, None], final=rubric)
    original = drain(_fired_with_rubric(workflow, strict_rubric, alice))
    first_version = workflow.current_version
    roster = [Specialist(agent=specialists[0], role_description="the Researcher.")]
    values = dict(workflow=workflow, actor=alice, name=workflow.name)
    workflow_update(roster=roster, lead_agent=first_version.lead_agent, **values)

    same = drain(engine.run_rerun(run=original, actor=alice))
    assert same.status == RunStatus.SUCCEEDED, same.error
    assert same.rerun_of == original and same.input == TASK
    assert same.workflow_run.version == first_version
    assert Delegation.objects.filter(run=same).count() == 2
    # The rubric that graded the original's final result (the schedule's) grades it again,
    # and its specialists keep the rubrics of the version.
    assert same.evaluation.rubric_version.rubric == strict_rubric
    assert Evaluation.objects.filter(thread__run=same, run__isnull=True).count() == 1

    latest = drain(engine.run_rerun(run=original, actor=alice, latest_version=True))
    assert latest.workflow_run.version == workflow.versions.get(number=2)
    assert Delegation.objects.filter(run=latest).count() == 1


def test_rerun_from_the_run_page_keeps_a_workflow_run_a_workflow_run(
    alice_client, make_workflow, sim, drain
):
    original = drain(workflow_run_start(workflow=make_workflow(), input=TASK))
    response = alice_client.post(reverse("runs:rerun", args=[original.pk]), {"version": "same"})
    rerun = original.workflow_run.workflow.runs.exclude(run=original).get().run
    # A workflow's run is watched as a tree: the rerun opens its own.
    assert response["Location"] == reverse("workflows:run", args=[rerun.pk])
    assert rerun.rerun_of == original


def test_the_schedule_form_takes_a_rubric_for_a_workflow(
    alice_client, graded_workflow, rubric, strict_rubric, alice
):
    workflow = graded_workflow(rubrics=[None], final=rubric)
    data = schedule_form_data(workflow, name="Nightly brief", rubric=strict_rubric.pk, input=TASK)
    response = alice_client.post(reverse("workflows:schedule-create"), data)
    assert response.status_code == 302
    schedule = workflow.schedules.get()
    assert schedule.rubric == strict_rubric
    outcomes.rubric_set_archived(rubric=strict_rubric, actor=alice, archived=True)
    edit = reverse("workflows:schedule-edit", args=[schedule.pk])
    page = alice_client.get(edit).text
    assert f'<option value="{strict_rubric.pk}" selected>Strict (archived)</option>' in page
    response = alice_client.post(edit, {**data, "name": "Renamed"})
    assert response.status_code == 400 and "is archived" in response.text
    schedule.refresh_from_db()
    assert schedule.name == "Nightly brief"
