"""The simulator's dreamer, through the simulator core."""

from agentops.llm.simulator import simulate_messages
from agentops.llm.simulator.roles.dreamer import TOOL_NAME, parse_sessions

TOOL = {
    "name": TOOL_NAME,
    "description": "Propose memory changes.",
    "input_schema": {"type": "object", "properties": {"changes": {"type": "array"}}},
}

SESSIONS = """Sessions 1-3.

## Session: run 11 · agent Support bot
Input: Customer 4411 asks about a refund. Our refund window is 30 days from delivery.
Output: Sure, happy to help.
Feedback (evaluation 5, needs_revision): Always quote the order number in the answer.

## Session: run 12 · agent Support bot
Input: A refund question. Our refund window is 30 days from delivery.
Feedback (evaluation 6, needs_revision): Always quote the order number in the answer.
Human override: The tone was too formal for this customer.

## Session: run 13 · agent Support bot
Input: Where is my parcel?
Feedback (evaluation 7, needs_revision): Always quote the order number in the answer.
"""


def _dream(text, seed=0):
    return simulate_messages(
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 4096,
            "system": "You curate memories.",
            "messages": [{"role": "user", "content": text}],
            "tools": [TOOL],
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
        },
        seed=seed,
    )


def test_recurring_feedback_and_facts_become_proposals():
    message = _dream(SESSIONS)
    assert message["stop_reason"] == "tool_use"
    (call,) = message["content"]
    assert call["name"] == TOOL_NAME
    changes = call["input"]["changes"]
    assert [(c["operation"], c["title"], c["tags"][0]) for c in changes] == [
        ("add", "Always quote the order number in the answer", "lesson"),
        ("add", "Our refund window is 30 days from delivery", "fact"),
    ]
    lesson, fact = changes
    assert [(e["run_id"], e.get("evaluation_id")) for e in lesson["evidence"]] == [
        (11, 5),
        (12, 6),
        (13, 7),
    ]
    assert "3 sessions" in lesson["rationale"]
    assert [e["run_id"] for e in fact["evidence"]] == [11, 12]


def test_the_dreamer_is_deterministic_and_quiet_without_recurrence():
    assert _dream(SESSIONS) == _dream(SESSIONS)
    lonely = "## Session: run 1\nInput: Something said only once in one session here.\n"
    (call,) = _dream(lonely)["content"]
    assert call["input"] == {"changes": []}


def test_sessions_parse_with_continuation_lines():
    sessions = parse_sessions(
        "## Session: run 4\nOutput: first part\ncontinued here\n## Notes\nx: y"
    )
    assert sessions == [
        {"run_id": 4, "evaluation_id": None, "lines": [("Output", "first part continued here")]}
    ]
