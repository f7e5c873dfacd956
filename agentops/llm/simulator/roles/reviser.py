"""A worker revising its answer after the grader's feedback (the outcome loop's revision
turn, `agentops.outcomes.grading.revision_messages`): it repeats its previous answer and adds
a section that takes up each point of the feedback, so the grader finds every criterion it
asked for addressed."""

from ..conversation import Conversation, blocks_of, text_of
from .base import Reply

FEEDBACK_HEADING = "Grader's feedback:"


def feedback_points(text: str) -> list[str]:
    """The feedback's bullet points, or its first paragraph when it has none."""
    after = text.split(FEEDBACK_HEADING, 1)[1].strip()
    lines = [line.strip() for line in after.splitlines()]
    points = [line[2:].strip() for line in lines if line.startswith("- ")]
    if points:
        return points
    first = after.split("\n\n", 1)[0].strip()
    return [first] if first else []


class ReviserRole:
    name = "reviser"

    def matches(self, conversation: Conversation) -> bool:
        return (
            FEEDBACK_HEADING in conversation.task_text
            and conversation.tool_choice_type in ("auto", "none")
            and not conversation.tool_results
            and not conversation.continues_assistant
        )

    def respond(self, conversation: Conversation) -> Reply:
        previous = next(
            (
                text_of(blocks_of(m))
                for m in reversed(conversation.messages)
                if m["role"] == "assistant" and text_of(blocks_of(m)).strip()
            ),
            "",
        )
        points = feedback_points(conversation.task_text)
        lines = [previous.strip(), "", "## Revised for the reviewer's feedback", ""]
        lines.extend(f"- Addressed: {point}" for point in points)
        return Reply(
            thinking=f"The grader asked for {len(points)} change(s); I address each one.",
            blocks=[{"type": "text", "text": "\n".join(lines).strip()}],
        )
