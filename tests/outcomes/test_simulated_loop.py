"""The outcome loop's pieces against the simulator through the real SDK: the simulator
plays the grader (from the rubric and the output only) and a worker that revises from the
grader's feedback. The loop driver here stands in for the run engine's steps."""

import json

import anthropic
import httpx2
import pytest

from agentops.llm.simulator.transport import SimulatorTransport
from agentops.outcomes import services
from agentops.outcomes.demo import DEMO_RUBRIC
from agentops.outcomes.grading import (
    GRADE_TOOL_NAME,
    GradeFormatError,
    grade_input,
    grader_request,
    parse_grade,
    revision_messages,
)
from agentops.outcomes.models import EvaluationStatus, Verdict

WORKER_SYSTEM = "You answer customers of Acme Bank. INTERNAL-NOTE-7731."
GRADER_ATTEMPTS = 3


@pytest.fixture
def transport():
    return SimulatorTransport()


@pytest.fixture
def client(transport):
    with anthropic.Anthropic(
        api_key="sim",
        base_url="http://simulator.local",
        max_retries=0,
        http_client=httpx2.Client(transport=transport),
    ) as client:
        yield client


@pytest.fixture
def rubric(team_a, alice):
    return services.rubric_create(team=team_a, actor=alice, **DEMO_RUBRIC)


def _text(message):
    return "".join(block.text for block in message.content if block.type == "text")


def _usage(message):
    return {
        "input_tokens": message.usage.input_tokens,
        "output_tokens": message.usage.output_tokens,
    }


def run_loop(client, team, rubric, task, worker_messages=None):
    """What the engine will do, step by step, with the outcomes functions."""
    version = rubric.current_version
    evaluation = services.evaluation_create(team=team, rubric=rubric, task=task)
    messages = worker_messages or [{"role": "user", "content": task}]
    answer = client.messages.create(
        model="claude-haiku-4-5", max_tokens=1024, system=WORKER_SYSTEM, messages=messages
    )
    output = _text(answer)
    while True:
        grade, error, attempts = None, "", 0
        while grade is None and attempts < GRADER_ATTEMPTS:
            attempts += 1
            response = client.messages.create(**grader_request(version, task, output))
            try:
                grade = parse_grade(version, grade_input(response.content))
            except GradeFormatError as failure:
                error = str(failure)
        if grade is None:
            services.iteration_record_grader_error(
                evaluation=evaluation, output=output, error=error, attempts=attempts
            )
            break
        iteration = services.iteration_record(
            evaluation=evaluation,
            output=output,
            grade=grade,
            worker_usage=_usage(answer),
            grader_usage=_usage(response),
            grader_attempts=attempts,
        )
        if iteration.verdict != Verdict.NEEDS_REVISION:
            break
        answer = client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=1024,
            system=WORKER_SYSTEM,
            messages=revision_messages(task, output, iteration.feedback),
        )
        output = _text(answer)
    evaluation.refresh_from_db()
    return evaluation


def _grader_bodies(transport):
    bodies = [r.body for r in transport.received if r.path.endswith("/messages")]
    return [b for b in bodies if (b.get("tool_choice") or {}).get("name") == GRADE_TOOL_NAME]


def test_demo_rubric_needs_revision_then_is_satisfied(client, transport, team_a, rubric):
    task = "A customer asks why their refund has not arrived yet. Reply to them."
    evaluation = run_loop(client, team_a, rubric, task)
    assert evaluation.verdict == Verdict.SATISFIED
    assert evaluation.status == EvaluationStatus.FINISHED
    first, second = evaluation.iterations.order_by("number")
    assert first.verdict == Verdict.NEEDS_REVISION
    assert "accuracy" in first.feedback and "nothing is invented" in first.feedback
    assert {s.criterion.key: s.score for s in first.scores.all()} == {
        "accuracy": 2,
        "completeness": 2,
        "tone": 0,
    }
    assert second.verdict == Verdict.SATISFIED and evaluation.weighted_score == 1
    assert second.output.startswith(first.output)
    assert "Addressed: accuracy" in second.output
    assert first.worker_output_tokens > 0 and first.grader_input_tokens > 0


def test_the_grader_sees_task_rubric_and_output_only(client, transport, team_a, rubric):
    transcript = [
        {"role": "user", "content": "Earlier question about fees, please."},
        {"role": "assistant", "content": "EARLIER-DRAFT about fees."},
        {"role": "user", "content": "A customer asks about refund timing. Reply to them."},
    ]
    task = "A customer asks about refund timing."
    evaluation = run_loop(client, team_a, rubric, task, transcript)
    outputs = list(evaluation.iterations.order_by("number").values_list("output", flat=True))
    graded = _grader_bodies(transport)
    assert len(graded) == len(outputs) == 2  # one grading per iteration
    for body, output in zip(graded, outputs, strict=True):
        # Exactly the task and this iteration's output: no earlier turns, no earlier drafts,
        # not the worker's system prompt.
        assert body["messages"] == [
            {"role": "user", "content": f"<task>\n{task}\n</task>\n\n<output>\n{output}\n</output>"}
        ]
        assert "INTERNAL-NOTE-7731" not in body["system"]
        assert "Support reply quality" in body["system"]
        assert "EARLIER-DRAFT" not in json.dumps(body)
        assert "Earlier question" not in json.dumps(body)
    assert "Revised for the reviewer" in graded[1]["messages"][0]["content"]


def test_a_malformed_grader_is_retried_then_a_grader_error(client, transport, team_a, rubric):
    task = "Reply to the customer. [sim:grader_malformed]"
    evaluation = run_loop(client, team_a, rubric, task)
    assert evaluation.verdict == Verdict.GRADER_ERROR
    assert "no score for: tone" in evaluation.error
    iteration = evaluation.iterations.get()
    assert iteration.grader_attempts == GRADER_ATTEMPTS
    assert len(_grader_bodies(transport)) == GRADER_ATTEMPTS
    assert not iteration.scores.exists()


def test_the_grader_can_say_the_rubric_does_not_apply(client, team_a, rubric):
    evaluation = run_loop(client, team_a, rubric, "Write a poem. [sim:rubric_does_not_apply]")
    assert evaluation.verdict == Verdict.FAILED
    assert evaluation.iterations.get().applies is False


def test_the_cap_stops_a_worker_that_never_satisfies(client, team_a, alice):
    values = {**DEMO_RUBRIC, "name": "Strict", "max_iterations": 1}
    rubric = services.rubric_create(team=team_a, actor=alice, **values)
    evaluation = run_loop(client, team_a, rubric, "A customer asks about fees.")
    assert evaluation.verdict == Verdict.MAX_ITERATIONS_REACHED
    assert evaluation.iterations.count() == 1
