"""Parse and validate a Messages API request body into what the roles need."""

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field

from .tokens import canonical_json

MARKER_RE = re.compile(r"\[sim:([a-z_]+)\]")
MARKERS = ("refusal", "pause_turn", "max_tokens", "stop_sequence", "context_window")
# `[sim:steps=N]` in the first user message: the worker role calls an offered tool on each
# turn until N - 1 tool rounds are done, then answers, so the run makes N model calls.
STEPS_RE = re.compile(r"\[sim:steps=(\d{1,4})\]")
URL_RE = re.compile(r"https?://[^\s<>\"')\]]+")


SIGNATURE_KEY = b"agentops-simulator"


def sign_thinking(text: str) -> str:
    """The signature of a thinking block; the API checks it when the block comes back."""
    mac = hmac.new(SIGNATURE_KEY, text.encode(), hashlib.sha256).digest()
    return "sim-" + base64.b64encode(mac).decode()


class SimulatorRequestError(Exception):
    """A request the real API would reject; answered as an error body with this status."""

    def __init__(
        self, message: str, *, status: int = 400, error_type: str = "invalid_request_error"
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type


@dataclass(frozen=True)
class ToolResult:
    tool_use_id: str
    name: str
    input: dict
    text: str
    is_error: bool


@dataclass
class Conversation:
    body: dict
    seed: int
    model: str
    max_tokens: int
    messages: list
    system_text: str
    tools: list
    tool_choice: dict
    thinking: dict | None
    stop_sequences: list
    # The latest user words (not tool results): what the user is asking for now.
    task_text: str
    # Tool results in the last user message, paired with the calls they answer.
    tool_results: list[ToolResult] = field(default_factory=list)
    markers: frozenset = frozenset()
    steps_wanted: int = 0  # from [sim:steps=N]; 0 when absent
    tool_rounds: int = 0  # assistant turns so far that called a tool
    continues_assistant: bool = False
    digest: str = ""

    @property
    def tool_choice_type(self) -> str:
        return self.tool_choice.get("type", "auto")

    @property
    def parallel_tool_use(self) -> bool:
        return not self.tool_choice.get("disable_parallel_tool_use", False)

    @property
    def thinking_enabled(self) -> bool:
        return bool(self.thinking) and self.thinking.get("type") in ("enabled", "adaptive")

    def tool_named(self, name: str) -> dict | None:
        return next((tool for tool in self.tools if tool.get("name") == name), None)

    def urls(self) -> list[str]:
        seen = []
        for url in URL_RE.findall(self.task_text):
            url = url.rstrip(".,;:!?")
            if url not in seen:
                seen.append(url)
        return seen


def blocks_of(message: dict) -> list:
    content = message.get("content", "")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def text_of(blocks) -> str:
    return "\n".join(
        str(block.get("text", ""))
        for block in blocks
        if isinstance(block, dict) and block.get("type") == "text"
    ).strip()


def _result_text(block: dict) -> str:
    content = block.get("content", "")
    if isinstance(content, list):
        return text_of(content)
    return str(content)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SimulatorRequestError(message)


def _validate_messages(messages) -> None:
    _check(isinstance(messages, list) and messages, "messages: at least one message is required")
    for index, message in enumerate(messages):
        _check(isinstance(message, dict), f"messages.{index}: Input should be an object")
        _check(
            message.get("role") in ("user", "assistant"),
            f"messages.{index}.role: Input should be 'user' or 'assistant'",
        )
        content = message.get("content")
        _check(
            isinstance(content, str | list),
            f"messages.{index}.content: Input should be a valid string or list",
        )
        is_final_assistant = index == len(messages) - 1 and message.get("role") == "assistant"
        _check(
            bool(content) or is_final_assistant,
            f"messages.{index}: all messages must have non-empty content except for the "
            "optional final assistant message",
        )
        if isinstance(content, list):
            for position, block in enumerate(content):
                _check(
                    isinstance(block, dict) and isinstance(block.get("type"), str),
                    f"messages.{index}.content.{position}: each block needs a type",
                )
                _check(
                    block.get("type") != "text" or bool(block.get("text")),
                    f"messages.{index}.content.{position}.text: text content blocks must be "
                    "non-empty",
                )
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        for position, block in enumerate(blocks_of(message)):
            if block.get("type") == "thinking":
                _check(
                    hmac.compare_digest(
                        str(block.get("signature", "")), sign_thinking(str(block.get("thinking")))
                    ),
                    f"messages.{index}.content.{position}: Invalid `signature` in `thinking` block",
                )
    final = messages[-1]
    if final["role"] == "assistant":
        final_blocks = blocks_of(final)
        last_text = final_blocks[-1].get("text", "") if final_blocks else ""
        _check(
            not (final_blocks and final_blocks[-1].get("type") == "text")
            or last_text == last_text.rstrip(),
            "final assistant content cannot end with trailing whitespace",
        )
    # Every tool_use must be answered in the very next message, and only those ids.
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        called = [b.get("id") for b in blocks_of(message) if b.get("type") == "tool_use"]
        if not called:
            continue
        following = messages[index + 1] if index + 1 < len(messages) else None
        if following is None:
            continue  # the last assistant turn may be a prefill to continue
        answered = [
            b.get("tool_use_id") for b in blocks_of(following) if b.get("type") == "tool_result"
        ]
        missing = [tool_id for tool_id in called if tool_id not in answered]
        _check(
            following["role"] == "user" and not missing,
            f"messages.{index + 1}: `tool_use` ids were found without `tool_result` blocks "
            f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
            "corresponding `tool_result` block in the next message.",
        )
    for index, message in enumerate(messages):
        results = [b for b in blocks_of(message) if b.get("type") == "tool_result"]
        if not results:
            continue
        previous = messages[index - 1] if index > 0 else {"role": "user", "content": []}
        called = {b.get("id") for b in blocks_of(previous) if b.get("type") == "tool_use"}
        for position, block in enumerate(results):
            _check(
                previous["role"] == "assistant" and block.get("tool_use_id") in called,
                f"messages.{index}.content.{position}: unexpected `tool_use_id` found in "
                f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` block "
                "must have a corresponding `tool_use` block in the previous message.",
            )


def _validate_tools(tools, tool_choice) -> None:
    _check(isinstance(tools, list), "tools: Input should be a valid list")
    names = set()
    for index, tool in enumerate(tools):
        _check(isinstance(tool, dict), f"tools.{index}: Input should be an object")
        name = tool.get("name")
        _check(isinstance(name, str) and name, f"tools.{index}.name: Field required")
        _check(name not in names, f"tools: Tool names must be unique, found {name!r} twice")
        names.add(name)
        if "type" not in tool or tool.get("type") == "custom":
            _check(
                isinstance(tool.get("input_schema"), dict),
                f"tools.{index}.input_schema: Field required",
            )
    _check(isinstance(tool_choice, dict), "tool_choice: Input should be an object")
    kind = tool_choice.get("type", "auto")
    _check(kind in ("auto", "any", "tool", "none"), f"tool_choice.type: unknown value {kind!r}")
    if kind == "tool":
        _check(
            tool_choice.get("name") in names,
            f"tool_choice.name: no tool named {tool_choice.get('name')!r} in tools",
        )
    if kind in ("any", "tool"):
        _check(bool(tools), "tool_choice: a tool must be provided when tool_choice is any or tool")


def _validate_thinking(thinking, max_tokens, tool_choice) -> None:
    _check(isinstance(thinking, dict), "thinking: Input should be an object")
    kind = thinking.get("type")
    _check(kind in ("enabled", "disabled", "adaptive"), f"thinking.type: unknown value {kind!r}")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        _check(
            isinstance(budget, int) and budget >= 1024,
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        )
        _check(budget < max_tokens, "`max_tokens` must be greater than `thinking.budget_tokens`")
    if kind in ("enabled", "adaptive"):
        _check(
            tool_choice.get("type", "auto") in ("auto", "none"),
            "Thinking may not be enabled when tool_choice forces tool use.",
        )


def parse_request(body, *, seed: int = 0) -> Conversation:
    """Validate a request body the way the API does and describe the conversation."""
    _check(isinstance(body, dict), "The request body must be a JSON object")
    model = body.get("model")
    _check(isinstance(model, str) and model, "model: Field required")
    max_tokens = body.get("max_tokens")
    _check(
        isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens >= 1,
        "max_tokens: Input should be an integer greater than or equal to 1",
    )
    messages = body.get("messages")
    _validate_messages(messages)
    tools = body.get("tools") or []
    tool_choice = body.get("tool_choice") or {"type": "auto"}
    _validate_tools(tools, tool_choice)
    thinking = body.get("thinking")
    if thinking is not None:
        _validate_thinking(thinking, max_tokens, tool_choice)
    stop_sequences = body.get("stop_sequences") or []
    _check(
        isinstance(stop_sequences, list) and all(isinstance(s, str) for s in stop_sequences),
        "stop_sequences: Input should be a list of strings",
    )

    system = body.get("system") or ""
    system_text = system if isinstance(system, str) else text_of(system)

    task_text = ""
    for message in reversed(messages):
        if message["role"] == "user" and text_of(blocks_of(message)):
            task_text = STEPS_RE.sub("", MARKER_RE.sub("", text_of(blocks_of(message)))).strip()
            break

    last = messages[-1]
    tool_results = []
    if last["role"] == "user" and len(messages) >= 2:
        calls = {b.get("id"): b for b in blocks_of(messages[-2]) if b.get("type") == "tool_use"}
        for block in blocks_of(last):
            if block.get("type") == "tool_result":
                call = calls.get(block.get("tool_use_id"), {})
                tool_results.append(
                    ToolResult(
                        tool_use_id=str(block.get("tool_use_id")),
                        name=str(call.get("name", "")),
                        input=dict(call.get("input") or {}),
                        text=_result_text(block),
                        is_error=bool(block.get("is_error", False)),
                    )
                )
    last_user_text = text_of(blocks_of(last)) if last["role"] == "user" else ""
    markers = frozenset(m for m in MARKER_RE.findall(last_user_text) if m in MARKERS)

    first_user = next((m for m in messages if m["role"] == "user"), None)
    steps_match = STEPS_RE.search(text_of(blocks_of(first_user))) if first_user else None
    tool_rounds = sum(
        1
        for message in messages
        if message["role"] == "assistant"
        and any(block.get("type") == "tool_use" for block in blocks_of(message))
    )

    # The wording depends on the conversation and seed, not on the output limit, so a
    # truncated answer is a prefix of the full one.
    content = {k: v for k, v in body.items() if k not in ("max_tokens", "metadata", "stream")}
    digest = hashlib.sha256(f"{seed}:{canonical_json(content)}".encode()).hexdigest()
    return Conversation(
        body=body,
        seed=seed,
        model=model,
        max_tokens=max_tokens,
        messages=messages,
        system_text=system_text,
        tools=tools,
        tool_choice=tool_choice,
        thinking=thinking if isinstance(thinking, dict) else None,
        stop_sequences=stop_sequences,
        task_text=task_text,
        tool_results=tool_results,
        markers=markers,
        steps_wanted=int(steps_match.group(1)) if steps_match else 0,
        tool_rounds=tool_rounds,
        continues_assistant=last["role"] == "assistant",
        digest=digest,
    )
