"""The grader of the outcome loop: answers a forced `submit_grade` call deterministically
from the rubric in the tool's schema and the output in the user message.

A criterion counts as addressed when the output names it (its key, with underscores read as
spaces or hyphens): it then scores the top of its scale, otherwise half of it rounded down (0
on a pass/fail criterion). The feedback lists every criterion not addressed with what good
looks like, so a worker that addresses each listed criterion passes on its next try.

Markers in the grader's user message (task or output): `[sim:rubric_does_not_apply]`
answers `applies: false`; `[sim:grader_malformed]` leaves the last criterion out, a
malformed grade the loop must retry and, if it keeps coming, record as a grader error.
"""

import re

from ..conversation import Conversation, blocks_of, text_of
from .base import Reply

GRADE_TOOL = "submit_grade"
OUTPUT_RE = re.compile(r"<output>\n?(.*?)\n?</output>", re.S)
GUIDANCE_RE = re.compile(r"What good looks like: (.*)$", re.S)


def _mentions(text: str, key: str) -> bool:
    lowered = text.lower()
    variants = {key.lower(), key.lower().replace("_", " "), key.lower().replace("_", "-")}
    return any(re.search(rf"(?<![\w]){re.escape(v)}(?![\w])", lowered) for v in variants)


def criteria_of(tool: dict) -> list[tuple[str, int, str]]:
    """(key, top of scale, guidance) for each criterion of the submit_grade schema."""
    scores = ((tool.get("input_schema") or {}).get("properties") or {}).get("scores") or {}
    criteria = []
    for key, entry in (scores.get("properties") or {}).items():
        score = ((entry or {}).get("properties") or {}).get("score") or {}
        guidance = GUIDANCE_RE.search((entry or {}).get("description") or "")
        criteria.append((key, int(score.get("maximum", 1)), guidance.group(1) if guidance else ""))
    return criteria


class GraderRole:
    name = "grader"

    def matches(self, conversation: Conversation) -> bool:
        return (
            conversation.tool_choice_type == "tool"
            and conversation.tool_choice.get("name") == GRADE_TOOL
        )

    def respond(self, conversation: Conversation) -> Reply:
        last_user = next(m for m in reversed(conversation.messages) if m["role"] == "user")
        raw = text_of(blocks_of(last_user))
        found = OUTPUT_RE.search(raw)
        output = found.group(1) if found else raw
        criteria = criteria_of(conversation.tool_named(GRADE_TOOL))
        if "[sim:rubric_does_not_apply]" in raw:
            grade = {
                "applies": False,
                "scores": {
                    key: {"score": 0, "rationale": "The rubric does not apply to this output."}
                    for key, _, _ in criteria
                },
                "feedback": "This rubric does not apply to the task.",
            }
            return Reply(blocks=[{"type": "tool_use", "name": GRADE_TOOL, "input": grade}])
        scores, missing = {}, []
        for key, top, guidance in criteria:
            if _mentions(output, key):
                scores[key] = {"score": top, "rationale": f"The output addresses {key}."}
            else:
                scores[key] = {
                    "score": top // 2,
                    "rationale": f"The output does not address {key} yet.",
                }
                missing.append(f"- {key}: {guidance}".rstrip(": "))
        if missing:
            feedback = "Address these criteria explicitly:\n" + "\n".join(missing)
        else:
            feedback = "Every criterion is addressed; no changes needed."
        if "[sim:grader_malformed]" in raw and scores:
            scores.pop(next(reversed(scores)))
        grade = {"applies": True, "scores": scores, "feedback": feedback}
        thinking = f"I grade the output against {len(criteria)} criteria."
        return Reply(
            thinking=thinking, blocks=[{"type": "tool_use", "name": GRADE_TOOL, "input": grade}]
        )
