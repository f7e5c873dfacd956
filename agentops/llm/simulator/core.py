"""The pure core: answer a Messages API request body with a Message, deterministically."""

import hashlib

from .catalogue import context_window, min_cache_tokens
from .conversation import SimulatorRequestError, parse_request, sign_thinking
from .roles import choose_role
from .tokens import (
    PromptCache,
    canonical_json,
    count_input_tokens,
    estimate_tokens,
    prompt_segments,
    truncate_to_tokens,
)


def _thinking_block(text: str) -> dict:
    return {"type": "thinking", "thinking": text, "signature": sign_thinking(text)}


def _half(text: str) -> str:
    # rstrip: the API refuses a final assistant turn ending in whitespace when it comes back.
    return truncate_to_tokens(text, max(estimate_tokens(text) // 2, 1)).rstrip()


def _block_tokens(block: dict) -> int:
    if block["type"] == "text":
        return estimate_tokens(block["text"])
    if block["type"] == "thinking":
        return estimate_tokens(block["thinking"])
    return estimate_tokens(block["name"] + canonical_json(block["input"]))


def _earliest_stop(text: str, stop_sequences: list) -> tuple[int, str] | None:
    hits = [(text.find(s), s) for s in stop_sequences if s and s in text]
    return min(hits) if hits else None


def _finish(conversation, reply):
    """Apply markers, stop sequences and max_tokens; return content and stop fields."""
    markers = conversation.markers
    blocks = [dict(block) for block in reply.blocks]
    stop_reason, stop_sequence, stop_details = None, None, None

    if "refusal" in markers:
        details = {
            "type": "refusal",
            "category": None,
            "explanation": "The simulator refused because the request carried [sim:refusal].",
        }
        return [], "refusal", None, details
    cut_reason = None
    if "pause_turn" in markers and not conversation.continues_assistant:
        cut_reason = "pause_turn"
    elif "max_tokens" in markers:
        cut_reason = "max_tokens"
    elif "context_window" in markers:
        cut_reason = "model_context_window_exceeded"
    elif "stop_sequence" in markers and conversation.stop_sequences:
        cut_reason = "stop_sequence"
    if cut_reason:
        text = next((b["text"] for b in blocks if b["type"] == "text"), "")
        blocks = [{"type": "text", "text": _half(text)}] if text else []
        stop_reason = cut_reason
        if cut_reason == "stop_sequence":
            stop_sequence = conversation.stop_sequences[0]

    content = []
    budget = conversation.max_tokens
    if conversation.thinking_enabled:
        limit = conversation.thinking.get("budget_tokens") or budget // 2
        thought = truncate_to_tokens(reply.thinking, min(limit, budget - 1))
        content.append(_thinking_block(thought))
        budget -= estimate_tokens(thought)

    for block in blocks:
        if block["type"] == "text" and stop_reason is None:
            hit = _earliest_stop(block["text"], conversation.stop_sequences)
            if hit:
                block["text"] = block["text"][: hit[0]]
                stop_reason, stop_sequence = "stop_sequence", hit[1]
        if block["type"] == "text" and not block["text"]:
            continue  # the API never sends (or accepts) an empty text block
        cost = _block_tokens(block)
        if cost > budget:
            if block["type"] == "text" and budget > 0:
                content.append({"type": "text", "text": truncate_to_tokens(block["text"], budget)})
            # A tool call that does not fit is left out rather than sent half-written.
            stop_reason, stop_sequence = "max_tokens", None
            break
        content.append(block)
        budget -= cost
        if stop_reason == "stop_sequence":
            break

    if stop_reason is None:
        has_tool_use = any(block["type"] == "tool_use" for block in content)
        stop_reason = "tool_use" if has_tool_use else "end_turn"
    return content, stop_reason, stop_sequence, stop_details


def _assign_ids(content: list, digest: str) -> list:
    for index, block in enumerate(content):
        if block["type"] == "tool_use":
            suffix = hashlib.sha256(f"{digest}:tool:{index}".encode()).hexdigest()[:24]
            content[index] = {"type": "tool_use", "id": f"toolu_sim{suffix}", **block}
    return content


def simulate_messages(body: dict, *, seed: int = 0, prompt_cache: PromptCache | None = None):
    """Answer a POST /v1/messages body with a Message dict, as the API would.

    The same body and seed always give the same content. `prompt_cache` (shared by a
    transport or server) turns repeated cached prefixes into cache reads; without it every
    cacheable prefix is billed as a cache write. Raises SimulatorRequestError for a request
    the API would reject. `stream` does not change the result: the transport and server
    replay it as server-sent events (streaming.message_events).
    """
    conversation = parse_request(body, seed=seed)
    total_input = count_input_tokens(body)
    window = context_window(conversation.model)
    if total_input > window:
        raise SimulatorRequestError(f"prompt is too long: {total_input} tokens > {window} maximum")
    reply = choose_role(conversation).respond(conversation)
    content, stop_reason, stop_sequence, stop_details = _finish(conversation, reply)
    content = _assign_ids(content, conversation.digest)

    segments = prompt_segments(body)
    minimum = min_cache_tokens(conversation.model)
    if prompt_cache is not None:
        created, read = prompt_cache.account(
            model=conversation.model, segments=segments, min_tokens=minimum
        )
    else:
        created, read = PromptCache().account(
            model=conversation.model, segments=segments, min_tokens=minimum
        )
    output_tokens = max(sum(_block_tokens(block) for block in content), 1)
    message = {
        "id": f"msg_sim{conversation.digest[:24]}",
        "type": "message",
        "role": "assistant",
        "model": conversation.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": total_input - created - read,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": created,
                "ephemeral_1h_input_tokens": 0,
            },
            "service_tier": "standard",
        },
    }
    if stop_details is not None:
        message["stop_details"] = stop_details
    return message


def count_tokens(body: dict) -> dict:
    """Answer a POST /v1/messages/count_tokens body."""
    if not isinstance(body, dict):
        raise SimulatorRequestError("The request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise SimulatorRequestError("model: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimulatorRequestError("messages: at least one message is required")
    return {"input_tokens": count_input_tokens(body)}
