"""The lead of a workflow: delegates one sub-task per specialist of its roster through the
`delegate` tool, then synthesizes the specialists' results into one answer."""

import re

from ..conversation import Conversation
from ..writing import keywords, summarize, title_from
from .base import Reply

DELEGATE = "delegate"
ROSTER_LINE_RE = re.compile(r"^- ([A-Za-z0-9_-]+): (.*)$", re.M)


def roster(tool: dict) -> list[tuple[str, str]]:
    """(specialist, role) pairs from the delegate tool's schema and description."""
    schema = tool.get("input_schema") or {}
    keys = ((schema.get("properties") or {}).get("specialist") or {}).get("enum") or []
    roles = dict(ROSTER_LINE_RE.findall(tool.get("description") or ""))
    return [(key, roles.get(key, "")) for key in keys]


class LeadRole:
    name = "lead"

    def matches(self, conversation: Conversation) -> bool:
        return (
            conversation.tool_named(DELEGATE) is not None
            and conversation.tool_choice_type != "none"
        )

    def respond(self, conversation: Conversation) -> Reply:
        delegated = [r for r in conversation.tool_results if r.name == DELEGATE]
        if delegated:
            return Reply(
                thinking=f"I have {len(delegated)} specialist result(s) to combine.",
                blocks=[{"type": "text", "text": self._synthesis(conversation, delegated)}],
            )
        team = roster(conversation.tool_named(DELEGATE))
        if not team or conversation.continues_assistant:
            text = "I have no specialists to delegate to, so I answer directly: " + summarize(
                conversation.task_text
            )
            return Reply(blocks=[{"type": "text", "text": text}])
        if not conversation.parallel_tool_use:
            team = team[:1]
        task = conversation.task_text
        calls = [
            {
                "type": "tool_use",
                "name": DELEGATE,
                "input": {
                    "specialist": key,
                    "task": (f"As our {role.rstrip('.')}: " if role else "") + task,
                },
            }
            for key, role in team
        ]
        names = ", ".join(f"`{key}`" for key, _ in team)
        intro = {"type": "text", "text": f"I'll split this between {names}."}
        return Reply(
            thinking=f"The roster has {len(team)} specialist(s); each gets one sub-task.",
            blocks=[intro, *calls],
        )

    @staticmethod
    def _synthesis(conversation: Conversation, results) -> str:
        words = keywords(conversation.task_text)
        failed = [r for r in results if r.is_error]
        lines = [f"## {title_from(words)}", ""]
        lines.append(
            f"I asked {len(results)} specialist(s) about “{summarize(conversation.task_text)}”"
            " and combined their answers."
        )
        lines.append("")
        for result in results:
            who = f"`{result.input.get('specialist', 'specialist')}`"
            if result.is_error:
                lines.append(f"- {who} could not help: {summarize(result.text, 160)}")
            else:
                lines.append(f"- {who}: {summarize(result.text, 240) or '(no answer)'}")
        lines.append("")
        if len(failed) == len(results):
            lines.append("No specialist succeeded, so I cannot give a combined answer.")
        elif failed:
            lines.append(
                f"{len(failed)} of {len(results)} specialist(s) failed; this synthesis rests "
                "on the others."
            )
        else:
            lines.append("Taken together, these answers cover the request.")
        return "\n".join(lines)
