"""The outcome loop inside the run engine.

A thread given a rubric has an Evaluation (`Evaluation.thread`): a run's lead thread (its
final output; then `Evaluation.run` is set too) or a workflow specialist whose roster entry
carries a rubric. When that thread answers, it does not end: a grader Thread (role "grader",
`graded_thread` pointing back) is added whose model steps send exactly
`grading.grader_request(version, task, output)`, a fresh context without any of the worker's
messages. The grader's answer is parsed; a malformed answer or a failing call is retried as a
new step of the same grader thread up to AGENTOPS_GRADER_ATTEMPTS, then recorded as a grader
error (the thread's output stands, ungraded). A graded iteration either ends the graded
thread (satisfied, failed, max_iterations_reached: a lead ends its run, a specialist answers
its parent) or sends the grader's feedback to the graded thread, whose next model step writes
the revision, and the loop grades again. Every model call is a durable engine step, so
claims, retries, budgets and the sweeper cover the grader too; a thread or run that ends
otherwise (cancelled, failed, over budget) interrupts its evaluation.
"""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum

from agentops.runs import services as engine
from agentops.runs.models import Run, RunStatus, Step, StepKind, Thread, ThreadRole, ThreadStatus

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
    with transaction.atomic():
        run = engine.run_start(actor=actor, **run_start_kwargs)
        thread_grade(thread=run.threads.get(role=ThreadRole.LEAD), rubric=rubric, actor=actor)
    return run


def thread_grade(*, thread, rubric, task=None, actor=None):
    """Grade `thread`'s answer against `rubric` before it counts: a run's lead thread (the
    run's final output) or a sub-agent (what goes back to its parent). Call it in the
    transaction that creates the thread. Returns the Evaluation."""
    from agentops.memory.services import memory_use_link_evaluation

    run = thread.run
    evaluation = evaluation_create(
        team=run.team,
        rubric=rubric,
        task=run.input if task is None else task,
        actor=actor,
        agent_version=thread.agent_version,
    )
    evaluation.thread = thread
    fields = ["thread"]
    if thread.parent_id is None:
        evaluation.run = run
        fields.append("run")
    evaluation.save(update_fields=fields)
    # The engine's hooks read these flags instead of looking for evaluations at each step.
    # The caller's objects are updated too: it may save them whole later in its transaction.
    if not thread.is_graded:
        thread.is_graded = True
        Thread.objects.filter(pk=thread.pk).update(is_graded=True)
    if not run.has_graded_threads:
        run.has_graded_threads = True
        Run.objects.filter(pk=run.pk).update(has_graded_threads=True)
    memory_use_link_evaluation(run=run, evaluation=evaluation)
    return evaluation


def _running_evaluation(thread_id):
    return (
        Evaluation.objects.select_related("rubric_version")
        .filter(thread_id=thread_id, status=EvaluationStatus.RUNNING)
        .first()
    )


def _usage(steps):
    totals = steps.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost_usd"))
    return {
        "input_tokens": totals["i"] or 0,
        "output_tokens": totals["o"] or 0,
        "cost_usd": totals["c"] or Decimal("0"),
    }


def _worker_usage(run, grader_thread):
    """The graded thread's model calls since its previous grading: this iteration's worker
    usage. A lead's count every thread of its run but the graders (its sub-agents worked for
    it); a sub-agent's are its own."""
    graded = grader_thread.graded_thread
    earlier = (
        Thread.objects.filter(graded_thread=graded, pk__lt=grader_thread.pk).order_by("-pk").first()
    )
    steps = Step.objects.filter(run=run, kind=StepKind.MODEL_CALL).exclude(
        thread__role=ThreadRole.GRADER
    )
    if graded.parent_id is not None:
        steps = steps.filter(thread=graded)
    if earlier is not None:
        last = earlier.steps.order_by("-pk").values_list("pk", flat=True).first() or 0
        steps = steps.filter(pk__gt=last)
    return _usage(steps)


def grade_answer(*, run, thread, output):
    """THREAD_ANSWERED_HOOKS: the answer of a thread with a running evaluation goes to a new
    grader thread instead of ending the thread."""
    if not thread.is_graded:
        return False
    evaluation = _running_evaluation(thread.pk)
    if evaluation is None:
        return False
    from agentops.memory.services import memory_use_link_evaluation

    request = grading.grader_request(evaluation.rubric_version, evaluation.task, output)
    grader = Thread.objects.create(
        run=run,
        agent_version=thread.agent_version,
        role=ThreadRole.GRADER,
        graded_thread=thread,
        messages=request["messages"],
    )
    engine.step_create(thread=grader, kind=StepKind.MODEL_CALL, turn=1)
    grader.save(update_fields=["next_sequence"])
    # Memory uses are written by the worker's first model call: link them now they exist.
    memory_use_link_evaluation(run=run, evaluation=evaluation)
    return True


def _graded(grader):
    return Thread.objects.select_for_update().get(pk=grader.graded_thread_id)


def _finish_graded(run, grader, output):
    """The loop is over: the graded thread's answer stands (a lead ends its run, a sub-agent
    answers its parent)."""
    graded = _graded(grader)
    if graded.status in engine.FINISHED_THREAD_STATUSES:
        return  # cancelled meanwhile: nothing waits for this answer
    engine.thread_finish(run=run, thread=graded, output=output)
    graded.save()


def grader_thread_request(*, thread):
    """The grader thread's whole request: the rubric version's system prompt, tool and forced
    tool choice with the task and output stored on the thread; nothing of the worker."""
    evaluation = Evaluation.objects.select_related("rubric_version").get(
        thread_id=thread.graded_thread_id
    )
    return grading.grader_request(
        evaluation.rubric_version, evaluation.task, _graded_output(thread)
    )


def _graded_output(thread):
    content = thread.messages[0]["content"]
    return content.split("<output>\n", 1)[1].rsplit("\n</output>", 1)[0]


def _attempt_failed(run, thread, error):
    """A malformed grade or a failed call: ask again, or record a grader error and let the
    graded thread's output stand."""
    attempts = thread.steps.filter(kind=StepKind.MODEL_CALL).count()
    if attempts < settings.AGENTOPS_GRADER_ATTEMPTS:
        engine.step_create(thread=thread, kind=StepKind.MODEL_CALL, turn=attempts + 1)
        return
    evaluation = _running_evaluation(thread.graded_thread_id)
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
    _finish_graded(run, thread, output)


def grader_result(*, run, thread, step, content):
    """The grader answered (its step is recorded): keep the iteration, then finish the graded
    thread or send it the feedback."""
    evaluation = _running_evaluation(thread.graded_thread_id)
    if evaluation is None:  # ended elsewhere (the admin): the output stands, ungraded here
        thread.status = ThreadStatus.CANCELLED
        _finish_graded(run, thread, _graded_output(thread))
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
    if iteration.verdict != Verdict.NEEDS_REVISION:
        _finish_graded(run, thread, output)
        return
    graded = _graded(thread)
    if graded.status in engine.FINISHED_THREAD_STATUSES:
        return
    feedback_turn = grading.revision_messages(evaluation.task, output, iteration.feedback)[-1]
    graded.messages = [*graded.messages, feedback_turn]
    engine.step_create(thread=graded, kind=StepKind.MODEL_CALL, turn=graded.turns + 1)
    graded.save()


def grader_failed(*, run, thread, step, error):
    _attempt_failed(run, thread, error)


def _interrupt(evaluation, run_status, error):
    try:
        if run_status == RunStatus.CANCELLED:
            evaluation_interrupt(evaluation=evaluation, actor=None)
        else:
            evaluation_finish(evaluation=evaluation, verdict=Verdict.INTERRUPTED, error=error)
    except ValidationError:
        pass  # finished concurrently: nothing left to interrupt


def interrupt_evaluation(*, run):
    """RUN_FINISHED_HOOKS: a run that ends without a verdict ends its evaluations too (a
    succeeded run's sub-agents may still have one running, when the lead answered first)."""
    if not run.has_graded_threads:
        return
    running = Evaluation.objects.select_related("rubric_version").filter(
        thread__run=run, status=EvaluationStatus.RUNNING
    )
    for evaluation in running:
        _interrupt(
            evaluation,
            run.status,
            f"The run ended {run.get_status_display().lower()}: {run.error}".rstrip(": "),
        )


def interrupt_child_evaluation(*, run, parent, child, outcome, text):
    """CHILD_FINISHED_HOOKS: a sub-agent that ends without an accepted answer (failed,
    cancelled, over budget) ends its evaluation and stops its grader."""
    if outcome == "succeeded" or not child.is_graded:
        return
    graders = Thread.objects.filter(graded_thread=child).exclude(
        status__in=engine.FINISHED_THREAD_STATUSES
    )
    engine.threads_stop(graders, status=ThreadStatus.CANCELLED, reason=f"sub-agent {outcome}")
    evaluation = _running_evaluation(child.pk)
    if evaluation is not None:
        status = RunStatus.CANCELLED if outcome == "cancelled" else RunStatus.FAILED
        _interrupt(evaluation, status, f"The sub-agent {outcome.replace('_', ' ')}: {text}")


def grade_rerun(*, original, rerun):
    """RERUN_HOOKS: a rerun of a graded run is graded by the same rubric (its current
    version), unless its starter already graded it."""
    graded = Evaluation.objects.filter(run=original).select_related("rubric_version__rubric")
    evaluation = graded.first()
    if evaluation is None or Evaluation.objects.filter(run=rerun).exists():
        return
    thread_grade(
        thread=rerun.threads.get(role=ThreadRole.LEAD),
        rubric=evaluation.rubric_version.rubric,
        actor=rerun.created_by,
    )


GRADER_HANDLER = engine.ThreadRoleHandler(
    request=grader_thread_request, result=grader_result, error=grader_failed
)


def install():
    """Register the loop with the engine (once, from AppConfig.ready)."""
    engine.THREAD_ROLE_HANDLERS[ThreadRole.GRADER] = GRADER_HANDLER
    if grade_answer not in engine.THREAD_ANSWERED_HOOKS:
        engine.THREAD_ANSWERED_HOOKS.append(grade_answer)
    if interrupt_evaluation not in engine.RUN_FINISHED_HOOKS:
        engine.RUN_FINISHED_HOOKS.append(interrupt_evaluation)
    engine.on_child_finished(interrupt_child_evaluation)
    if grade_rerun not in engine.RERUN_HOOKS:
        engine.RERUN_HOOKS.append(grade_rerun)
