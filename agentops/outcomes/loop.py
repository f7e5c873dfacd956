"""The outcome loop inside the run engine.

A run given a rubric has an Evaluation (`Evaluation.run`). When its lead thread answers, the
run does not end: a grader Thread (role "grader") is added whose model steps send exactly
`grading.grader_request(version, task, output)`, a fresh context without any of the worker's
messages. The grader's answer is parsed; a malformed answer or a failing call is retried as a
new step of the same grader thread up to AGENTOPS_GRADER_ATTEMPTS, then recorded as a grader
error (the run succeeds: its output stands, ungraded). A graded iteration either ends the run
(satisfied, failed, max_iterations_reached) or sends the grader's feedback to the worker's
thread, whose next model step writes the revision, and the loop grades again. Every model
call is a durable engine step, so claims, retries, budgets and the sweeper cover the grader
too; a run that ends otherwise (cancelled, failed, over budget) interrupts its evaluation.
"""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum

from agentops.runs import services as engine
from agentops.runs.models import RunStatus, Step, StepKind, Thread, ThreadRole, ThreadStatus

from . import grading
from .models import Evaluation, EvaluationStatus, Verdict
from .services import (
    evaluation_create,
    evaluation_finish,
    evaluation_interrupt,
    iteration_record,
    iteration_record_grader_error,
)


def run_start_graded(*, rubric, actor=None, **run_start_kwargs):
    """`runs.services.run_start` plus an evaluation of its output against `rubric`, in one
    transaction (the first step is sent to a worker only after both exist). Returns the Run."""
    from agentops.memory.services import memory_use_link_evaluation

    with transaction.atomic():
        run = engine.run_start(actor=actor, **run_start_kwargs)
        evaluation = evaluation_create(
            team=run.team,
            rubric=rubric,
            task=run.input,
            actor=actor,
            agent_version=run.agent_version,
        )
        evaluation.run = run
        evaluation.save(update_fields=["run"])
        memory_use_link_evaluation(run=run, evaluation=evaluation)
    return run


def _running_evaluation(run):
    return (
        Evaluation.objects.select_related("rubric_version")
        .filter(run=run, status=EvaluationStatus.RUNNING)
        .first()
    )


def _grader_threads(run):
    return Thread.objects.filter(run=run, role=ThreadRole.GRADER)


def _usage(steps):
    totals = steps.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost_usd"))
    return {
        "input_tokens": totals["i"] or 0,
        "output_tokens": totals["o"] or 0,
        "cost_usd": totals["c"] or Decimal("0"),
    }


def _worker_usage(run, grader_thread):
    """The worker's model calls since the previous grading: this iteration's worker usage."""
    earlier = _grader_threads(run).filter(pk__lt=grader_thread.pk).order_by("-pk").first()
    steps = Step.objects.filter(run=run, kind=StepKind.MODEL_CALL).exclude(
        thread__role=ThreadRole.GRADER
    )
    if earlier is not None:
        last = earlier.steps.order_by("-pk").values_list("pk", flat=True).first() or 0
        steps = steps.filter(pk__gt=last)
    return _usage(steps)


def grade_answer(*, run, thread, output):
    """LEAD_ANSWERED_HOOKS: a graded run's answer goes to a new grader thread."""
    evaluation = _running_evaluation(run)
    if evaluation is None:
        return False
    from agentops.memory.services import memory_use_link_evaluation

    request = grading.grader_request(evaluation.rubric_version, evaluation.task, output)
    grader = Thread.objects.create(
        run=run,
        agent_version=run.agent_version,
        role=ThreadRole.GRADER,
        messages=request["messages"],
    )
    engine.step_create(thread=grader, kind=StepKind.MODEL_CALL, turn=1)
    grader.save(update_fields=["next_sequence"])
    # Memory uses are written by the worker's first model call: link them now they exist.
    memory_use_link_evaluation(run=run, evaluation=evaluation)
    return True


def _lead(run):
    return Thread.objects.select_for_update().get(run=run, parent=None, role=ThreadRole.LEAD)


def grader_thread_request(*, thread):
    """The grader thread's whole request: the rubric version's system prompt, tool and forced
    tool choice with the task and output stored on the thread; nothing of the worker."""
    evaluation = Evaluation.objects.select_related("rubric_version").get(run_id=thread.run_id)
    return grading.grader_request(
        evaluation.rubric_version, evaluation.task, _graded_output(thread)
    )


def _graded_output(thread):
    content = thread.messages[0]["content"]
    return content.split("<output>\n", 1)[1].rsplit("\n</output>", 1)[0]


def _attempt_failed(run, thread, error):
    """A malformed grade or a failed call: ask again, or record a grader error and let the
    run succeed with its output."""
    attempts = thread.steps.filter(kind=StepKind.MODEL_CALL).count()
    if attempts < settings.AGENTOPS_GRADER_ATTEMPTS:
        engine.step_create(thread=thread, kind=StepKind.MODEL_CALL, turn=attempts + 1)
        return
    evaluation = _running_evaluation(run)
    output = _graded_output(thread)
    thread.status = ThreadStatus.FAILED
    thread.output = f"Grader error after {attempts} attempts: {error}"
    if evaluation is not None:
        iteration_record_grader_error(
            evaluation=evaluation,
            output=output,
            error=f"{error}",
            attempts=attempts,
            worker_usage=_worker_usage(run, thread),
            grader_usage=_usage(thread.steps.filter(kind=StepKind.MODEL_CALL)),
        )
    lead = _lead(run)
    engine.lead_thread_finish(run=run, thread=lead, output=output)
    lead.save()


def grader_result(*, run, thread, step, content):
    """The grader answered (its step is recorded): keep the iteration, then finish the run or
    send the feedback to the worker."""
    evaluation = _running_evaluation(run)
    if evaluation is None:  # ended elsewhere (the admin): the output stands, ungraded here
        thread.status = ThreadStatus.CANCELLED
        lead = _lead(run)
        engine.lead_thread_finish(run=run, thread=lead, output=_graded_output(thread))
        lead.save()
        return
    version = evaluation.rubric_version
    try:
        grade = grading.parse_grade(version, grading.grade_input(content))
    except grading.GradeFormatError as error:
        Step.objects.filter(pk=step.pk).update(error=f"Malformed grade: {error}")
        _attempt_failed(run, thread, error)
        return
    output = _graded_output(thread)
    iteration = iteration_record(
        evaluation=evaluation,
        output=output,
        grade=grade,
        worker_usage=_worker_usage(run, thread),
        grader_usage=_usage(thread.steps.filter(kind=StepKind.MODEL_CALL)),
        grader_attempts=thread.steps.filter(kind=StepKind.MODEL_CALL).count(),
    )
    thread.status = ThreadStatus.SUCCEEDED
    thread.output = f"{iteration.get_verdict_display()}: {grade.feedback}".strip()
    lead = _lead(run)
    if iteration.verdict == Verdict.NEEDS_REVISION:
        feedback_turn = grading.revision_messages(evaluation.task, output, iteration.feedback)[-1]
        lead.messages = [*lead.messages, feedback_turn]
        engine.step_create(thread=lead, kind=StepKind.MODEL_CALL, turn=lead.turns + 1)
    else:
        engine.lead_thread_finish(run=run, thread=lead, output=output)
    lead.save()


def grader_failed(*, run, thread, step, error):
    _attempt_failed(run, thread, error)


def interrupt_evaluation(*, run):
    """RUN_FINISHED_HOOKS: a run that ends without a verdict ends its evaluation too."""
    if run.status == RunStatus.SUCCEEDED:
        return
    evaluation = _running_evaluation(run)
    if evaluation is None:
        return
    try:
        if run.status == RunStatus.CANCELLED:
            evaluation_interrupt(evaluation=evaluation, actor=None)
        else:
            evaluation_finish(
                evaluation=evaluation,
                verdict=Verdict.INTERRUPTED,
                error=f"The run ended {run.get_status_display().lower()}: {run.error}",
            )
    except ValidationError:
        pass  # finished concurrently: nothing left to interrupt


GRADER_HANDLER = engine.ThreadRoleHandler(
    request=grader_thread_request, result=grader_result, error=grader_failed
)


def install():
    """Register the loop with the engine (once, from AppConfig.ready)."""
    engine.THREAD_ROLE_HANDLERS[ThreadRole.GRADER] = GRADER_HANDLER
    if grade_answer not in engine.LEAD_ANSWERED_HOOKS:
        engine.LEAD_ANSWERED_HOOKS.append(grade_answer)
    if interrupt_evaluation not in engine.RUN_FINISHED_HOOKS:
        engine.RUN_FINISHED_HOOKS.append(interrupt_evaluation)
