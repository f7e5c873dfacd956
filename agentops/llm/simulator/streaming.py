"""Server-sent events for stream=true: the finished Message replayed as the API's event flow.

The simulator computes the whole answer first and then emits message_start,
content_block_start / *_delta / content_block_stop per block, message_delta and
message_stop, so a streamed answer is exactly the non-streamed one.
"""

import json

from .tokens import canonical_json

CHUNK_CHARS = 48


def _chunks(text: str) -> list[str]:
    return [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]


def _event(name: str, payload: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


def _block_events(index: int, block: dict) -> list[bytes]:
    kind = block["type"]
    if kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": part} for part in _chunks(block["text"])]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": part} for part in _chunks(block["thinking"])
        ]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    else:  # tool_use: the input arrives as partial JSON
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": part}
            for part in _chunks(canonical_json(block["input"]))
        ]
    events = [
        _event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )
    ]
    for delta in deltas:
        events.append(
            _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        )
    events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def message_events(message: dict) -> bytes:
    usage = message["usage"]
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    start.pop("stop_details", None)
    events = [_event("message_start", {"type": "message_start", "message": start})]
    events.append(_event("ping", {"type": "ping"}))
    for index, block in enumerate(message["content"]):
        events.extend(_block_events(index, block))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    if message.get("stop_details"):
        delta["stop_details"] = message["stop_details"]
    events.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": delta,
                "usage": {
                    "output_tokens": usage["output_tokens"],
                    "input_tokens": usage["input_tokens"],
                    "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                    "cache_read_input_tokens": usage["cache_read_input_tokens"],
                },
            },
        )
    )
    events.append(_event("message_stop", {"type": "message_stop"}))
    return b"".join(events)
