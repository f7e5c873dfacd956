import json
from decimal import Decimal

import pytest

from agentops.outcomes.grading import (
    GRADE_TOOL_NAME,
    GradeFormatError,
    grade_input,
    grader_request,
    grader_tool_schema,
    parse_grade,
    revision_messages,
    verdict_for,
    weighted_score,
)
from agentops.outcomes.models import Verdict
from agentops.outcomes.services import rubric_update

from .factories import CRITERIA, grade, make_rubric, tool_input


@pytest.fixture
def version(team_a, alice):
    return make_rubric(team_a, alice).current_version


def test_tool_schema_asks_for_every_criterion_on_its_own_scale(version):
    schema = grader_tool_schema(version)
    assert schema["name"] == GRADE_TOOL_NAME
    body = schema["input_schema"]
    assert body["required"] == ["applies", "scores", "feedback"]
    scores = body["properties"]["scores"]
    assert scores["required"] == ["accuracy", "completeness", "tone"]
    assert scores["additionalProperties"] is False
    accuracy = scores["properties"]["accuracy"]["properties"]["score"]
    assert accuracy == {"type": "integer", "minimum": 0, "maximum": 5}
    assert scores["properties"]["tone"]["properties"]["score"]["maximum"] == 1


def test_grader_request_forces_the_tool_and_holds_task_rubric_and_output_only(version):
    worker_transcript = [
        {"role": "user", "content": "Answer the customer about refund 42."},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "SECRET-TOOL"}}
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]},
        {"role": "assistant", "content": "Your refund was issued."},
    ]
    request = grader_request(
        version, "Answer the customer about refund 42.", "Your refund was issued."
    )
    assert request["tool_choice"] == {"type": "tool", "name": GRADE_TOOL_NAME}
    assert [tool["name"] for tool in request["tools"]] == [GRADE_TOOL_NAME]
    assert len(request["messages"]) == 1
    message = request["messages"][0]
    assert message["role"] == "user"
    assert "<task>\nAnswer the customer about refund 42.\n</task>" in message["content"]
    assert "<output>\nYour refund was issued.\n</output>" in message["content"]
    assert "Every fact is right." in request["system"]
    assert "accuracy" in request["system"] and "weight 2" in request["system"]
    assert request["model"] == version.grader_model
    dumped = json.dumps(request)
    assert "SECRET-TOOL" not in dumped and "tool_use" not in dumped
    assert worker_transcript[1]["content"][0]["name"] not in dumped


def test_grader_instructions_reach_the_system_prompt(team_a, alice):
    version = make_rubric(
        team_a, alice, grader_instructions="Penalise any promise of a date."
    ).current_version
    assert "Penalise any promise of a date." in grader_request(version, "t", "o")["system"]


def test_parse_grade_reads_a_complete_answer(version):
    parsed = parse_grade(version, tool_input(4, 3.0, 1, feedback="  More detail. "))
    assert parsed.applies is True
    assert parsed.score_map == {"accuracy": 4, "completeness": 3, "tone": 1}
    assert parsed.scores["accuracy"].rationale == "a"
    assert parsed.feedback == "More detail."


def test_parse_grade_accepts_does_not_apply_without_scores(version):
    parsed = parse_grade(version, {"applies": False, "feedback": "Not a support reply."})
    assert parsed.applies is False and parsed.scores == {}


def _without(mapping, key):
    return {k: v for k, v in mapping.items() if k != key}


@pytest.mark.parametrize(
    "answer,message",
    [
        ("not json", "must be an object"),
        (None, "must be an object"),
        (_without(tool_input(), "applies"), "no 'applies'"),
        ({**tool_input(), "applies": "yes"}, "'applies' must be true or false"),
        (_without(tool_input(), "feedback"), "'feedback' must be a string"),
        (_without(tool_input(), "scores"), "'scores' must be an object"),
        ({**tool_input(), "scores": [1, 2, 3]}, "'scores' must be an object"),
        (
            {**tool_input(), "scores": _without(tool_input()["scores"], "tone")},
            "no score for: tone",
        ),
        (
            {**tool_input(), "scores": {**tool_input()["scores"], "style": {"score": 1}}},
            "Unknown criteria in the grade: style",
        ),
        (tool_input(accuracy=6), "outside the scale 0 to 5"),
        (tool_input(tone=2), "outside the scale 0 to 1"),
        (tool_input(accuracy=-1), "outside the scale"),
        (tool_input(accuracy=3.5), "must be an integer"),
        (tool_input(accuracy="4"), "must be an integer"),
        (tool_input(tone=True), "must be an integer"),
        (
            {**tool_input(), "scores": {**tool_input()["scores"], "tone": 1}},
            "expected an object with score and rationale",
        ),
        (
            {**tool_input(), "scores": {**tool_input()["scores"], "tone": {"rationale": "r"}}},
            "'tone': no score",
        ),
        (
            {
                **tool_input(),
                "scores": {**tool_input()["scores"], "tone": {"score": 1, "rationale": 5}},
            },
            "rationale must be a string",
        ),
    ],
)
def test_parse_grade_rejects_malformed_answers(version, answer, message):
    with pytest.raises(GradeFormatError, match=message):
        parse_grade(version, answer)


def test_weighted_score_is_the_weighted_mean_of_score_over_scale(version):
    criteria = list(version.criteria.all())
    # (2 * 4/5 + 1 * 3/5 + 1 * 1/1) / 4 = (1.6 + 0.6 + 1) / 4 = 0.8
    assert weighted_score(criteria, {"accuracy": 4, "completeness": 3, "tone": 1}) == Decimal(
        "0.8000"
    )
    # (2 * 0 + 1 * 1/5 + 0) / 4 = 0.05
    assert weighted_score(criteria, {"accuracy": 0, "completeness": 1, "tone": 0}) == Decimal(
        "0.0500"
    )
    # (2 * 1/5 + 1 * 1/5 + 1 * 0) / 4 = 0.15; and 2/3 rounds half up to four places
    assert weighted_score(criteria[:2], {"accuracy": 5, "completeness": 0}) == Decimal("0.6667")


def test_verdicts_threshold_minimum_cap_and_does_not_apply(team_a, alice):
    version = make_rubric(team_a, alice, pass_threshold=Decimal("0.8")).current_version
    # Exactly at the threshold passes.
    assert verdict_for(version, grade(4, 3, 1), 1) == Verdict.SATISFIED
    assert verdict_for(version, grade(4, 2, 1), 1) == Verdict.NEEDS_REVISION
    assert verdict_for(version, grade(4, 2, 1), 2) == Verdict.NEEDS_REVISION
    assert verdict_for(version, grade(4, 2, 1), 3) == Verdict.MAX_ITERATIONS_REACHED
    assert verdict_for(version, grade(5, 5, 1), 3) == Verdict.SATISFIED
    assert verdict_for(version, grade(applies=False), 1) == Verdict.FAILED
    assert verdict_for(version, grade(applies=False), 3) == Verdict.FAILED


def test_a_criterion_below_its_minimum_never_passes(team_a, alice):
    rubric = make_rubric(team_a, alice, pass_threshold=Decimal("0.5"))
    version = rubric.current_version
    # Accuracy 2 is under its minimum of 3 although (2*0.4 + 1 + 1) / 4 = 0.7 >= 0.5.
    assert verdict_for(version, grade(2, 5, 1), 1) == Verdict.NEEDS_REVISION
    assert verdict_for(version, grade(2, 5, 1), 3) == Verdict.MAX_ITERATIONS_REACHED


def test_minimum_and_threshold_both_apply(team_a, alice):
    rubric = make_rubric(team_a, alice, pass_threshold=Decimal("0.5"))
    version = rubric.current_version
    assert verdict_for(version, grade(3, 5, 0), 1) == Verdict.SATISFIED  # 2.2/4 = 0.55
    assert verdict_for(version, grade(3, 0, 0), 1) == Verdict.NEEDS_REVISION  # 1.2/4 = 0.3
    assert verdict_for(version, grade(2, 5, 1), 1) == Verdict.NEEDS_REVISION  # under minimum


def test_one_iteration_cap_ends_at_the_first_grade(team_a, alice):
    version = make_rubric(team_a, alice, max_iterations=1).current_version
    assert verdict_for(version, grade(1, 1, 0), 1) == Verdict.MAX_ITERATIONS_REACHED


def test_grading_uses_the_pinned_version_criteria(team_a, alice):
    rubric = make_rubric(team_a, alice)
    old = rubric.current_version
    new = rubric_update(rubric=rubric, actor=alice, name="Support reply", criteria=CRITERIA[:1])
    assert parse_grade(old, tool_input()).score_map.keys() == {"accuracy", "completeness", "tone"}
    with pytest.raises(GradeFormatError, match="Unknown criteria"):
        parse_grade(new, tool_input())


def test_revision_messages_give_the_worker_its_answer_and_the_feedback():
    messages = revision_messages("Write a haiku.", "Old haiku.", "Count the syllables.")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == "Write a haiku."
    assert messages[1]["content"] == "Old haiku."
    assert "Count the syllables." in messages[2]["content"]
    assert "revised answer" in messages[2]["content"]
    empty = revision_messages("Task", "", "")
    assert empty[1]["content"] and "Improve the answer" in empty[2]["content"]


def test_grade_input_finds_the_forced_call_or_says_it_is_missing():
    content = [
        {"type": "text", "text": "Grading."},
        {"type": "tool_use", "id": "t", "name": "submit_grade", "input": {"applies": True}},
    ]
    assert grade_input(content) == {"applies": True}

    class Block:
        type = "tool_use"
        name = "submit_grade"
        input = {"applies": False}

    assert grade_input([Block()]) == {"applies": False}
    with pytest.raises(GradeFormatError, match="without calling submit_grade"):
        grade_input([{"type": "text", "text": "I think it is fine."}])
    with pytest.raises(GradeFormatError):
        grade_input([{"type": "tool_use", "name": "other", "input": {}}])
