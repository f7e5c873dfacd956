"""The worker: answers the user's request in Markdown and calls tools when asked to."""

import re

from ..conversation import Conversation
from ..schema import Hints, build_tool_input, schema_has_url_property
from ..writing import keywords, rng_for, summarize, title_from
from .base import Reply

MAX_PARALLEL_CALLS = 4

OPENINGS = (
    "Here is a short answer to your request",
    "This answer addresses your request",
    "Below is a concise response to what you asked",
)
POINTS = (
    "**{word}** is central to the request, so the answer starts from it.",
    "**{word}** comes up in the request; it is covered here directly.",
    "**{word}**: the request asks about this, and it shapes the recommendation.",
    "**{word}** matters for the outcome and is taken into account.",
)
CLOSINGS = (
    "Next step: check these points against your own data before relying on them.",
    "If you need more depth on one point, ask about it specifically.",
    "These points follow directly from the request as written.",
)


def _mentions(text: str, name: str) -> bool:
    lowered = text.lower()
    variants = {name.lower(), name.lower().replace("_", " "), name.lower().replace("_", "-")}
    return any(re.search(rf"(?<![\w]){re.escape(v)}(?![\w])", lowered) for v in variants)


class WorkerRole:
    name = "worker"

    def matches(self, conversation: Conversation) -> bool:
        return True

    def respond(self, conversation: Conversation) -> Reply:
        thinking = self._thinking(conversation)
        long_run = self._long_run_call(conversation)
        if long_run:
            return Reply(thinking=thinking, blocks=long_run)
        if conversation.tool_results and conversation.tool_choice_type in ("auto", "none"):
            return Reply(thinking=thinking, blocks=[self._text(self._use_results(conversation))])
        calls, problems = self._tool_calls(conversation)
        if calls:
            blocks = []
            if conversation.tool_choice_type == "auto":
                names = ", ".join(f"`{name}`" for name in dict.fromkeys(c["name"] for c in calls))
                blocks.append(self._text(f"I'll use {names} to answer this."))
            return Reply(thinking=thinking, blocks=blocks + calls)
        return Reply(thinking=thinking, blocks=[self._text(self._answer(conversation, problems))])

    def _long_run_call(self, conversation: Conversation) -> list:
        """With [sim:steps=N], one call of the first offered tool per turn until N - 1 tool
        rounds are done (a deterministic long run, e.g. for the overhead benchmark)."""
        wanted = conversation.steps_wanted
        if (
            not wanted
            or not conversation.tools
            or conversation.tool_choice_type == "none"
            or conversation.continues_assistant
            or conversation.tool_rounds >= wanted - 1
        ):
            return []
        tool = conversation.tools[0]
        arguments = build_tool_input(tool.get("input_schema"), self._hints(conversation)) or {}
        round_number = conversation.tool_rounds + 1
        return [
            self._text(f"Step {round_number} of {wanted - 1}: I'll use `{tool['name']}`."),
            {"type": "tool_use", "name": tool["name"], "input": arguments},
        ]

    @staticmethod
    def _text(text: str) -> dict:
        return {"type": "text", "text": text}

    def _thinking(self, conversation: Conversation) -> str:
        words = keywords(conversation.task_text)
        lines = [f"The user asks: {summarize(conversation.task_text, 200)!s}"]
        if conversation.system_text:
            lines.append(f"My instructions say: {summarize(conversation.system_text, 120)}")
        if words:
            lines.append("The key points to cover are " + ", ".join(words) + ".")
        if conversation.tool_results:
            lines.append(f"I have {len(conversation.tool_results)} tool result(s) to use.")
        elif conversation.tools:
            lines.append("I will check whether one of my tools fits the request.")
        return "\n".join(lines)

    def _hints(self, conversation: Conversation, url: str = "") -> Hints:
        return Hints(
            text=conversation.task_text,
            url=url,
            urls=conversation.urls(),
            keywords=keywords(conversation.task_text),
            key=conversation.digest,
        )

    def _tool_calls(self, conversation: Conversation) -> tuple[list, list]:
        """The tool calls this turn needs, and the tools that fit but got no valid input."""
        choice = conversation.tool_choice_type
        if choice == "none" or not conversation.tools:
            return [], []
        if choice == "auto" and conversation.continues_assistant:
            return [], []
        text = conversation.task_text
        urls = conversation.urls()
        planned = []  # (tool, url)
        if choice == "tool":
            tool = conversation.tool_named(conversation.tool_choice["name"])
            planned = self._plan_for(tool, urls) or [(tool, "")]
        else:
            for tool in conversation.tools:
                if _mentions(text, tool["name"]) or (
                    urls and schema_has_url_property(tool.get("input_schema"))
                ):
                    planned.extend(self._plan_for(tool, urls) or [(tool, "")])
            if not planned and choice == "any":
                planned = [(conversation.tools[0], "")]
        if not conversation.parallel_tool_use:
            planned = planned[:1]
        calls, problems = [], []
        for tool, url in planned[:MAX_PARALLEL_CALLS]:
            arguments = build_tool_input(tool.get("input_schema"), self._hints(conversation, url))
            if arguments is None:
                problems.append(tool["name"])
            else:
                calls.append({"type": "tool_use", "name": tool["name"], "input": arguments})
        return calls, problems

    @staticmethod
    def _plan_for(tool: dict, urls: list) -> list:
        schema = tool.get("input_schema") or {}
        if urls and schema_has_url_property(schema):
            properties = schema.get("properties") or {}
            takes_list = any(
                (sub or {}).get("type") == "array" and name.lower() in ("urls", "links")
                for name, sub in properties.items()
            )
            if takes_list:
                return [(tool, urls[0])]
            return [(tool, url) for url in urls]
        return []

    def _answer(self, conversation: Conversation, problems: list) -> str:
        rng = rng_for(conversation.digest, "answer")
        words = keywords(conversation.task_text)
        lines = [f"## {title_from(words)}", ""]
        request = summarize(conversation.task_text) or "(no question was given)"
        lines.append(f"{rng.choice(OPENINGS)}: “{request}”.")
        lines.append("")
        templates = list(POINTS)
        rng.shuffle(templates)
        for index, word in enumerate(words[:3]):
            lines.append("- " + templates[index % len(templates)].format(word=word))
        if words:
            lines.append("")
        if conversation.system_text:
            lines.append(
                f"_Following the instructions: “{summarize(conversation.system_text, 100)}”._"
            )
            lines.append("")
        for name in problems:
            lines.append(
                f"I could not form valid input for the `{name}` tool, so I did not call it."
            )
            lines.append("")
        lines.append(rng.choice(CLOSINGS))
        return "\n".join(lines)

    def _use_results(self, conversation: Conversation) -> str:
        words = keywords(conversation.task_text)
        results = conversation.tool_results
        failed = [r for r in results if r.is_error]
        lines = [f"## {title_from(words)}", ""]
        lines.append(f"I called {len(results)} tool(s) for “{summarize(conversation.task_text)}”:")
        lines.append("")
        for result in results:
            label = f"`{result.name or 'tool'}`"
            if result.is_error:
                lines.append(f"- {label} failed: {summarize(result.text, 160) or 'no details'}")
            else:
                lines.append(f"- {label} returned: {summarize(result.text, 200) or '(empty)'}")
        lines.append("")
        if len(failed) == len(results):
            lines.append(
                "None of the tool calls succeeded, so I cannot answer from their results; "
                "please check the tools and try again."
            )
        elif failed:
            lines.append(
                f"{len(failed)} of {len(results)} call(s) failed, so this answer rests only on "
                "the results that came back."
            )
        else:
            lines.append("The answer above is based on these results.")
        return "\n".join(lines)
