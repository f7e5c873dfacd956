"""Deterministic token accounting and a small prompt cache.

Real tokenizers are not available offline, so the simulator counts about four characters per
token. The numbers are stable for the same text, which is what rate limiting, budgets and
tests need; they are not meant to match Anthropic's tokenizer exactly.
"""

import hashlib
import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

CHARS_PER_TOKEN = 4
# Image and PDF sizes cannot be known without decoding them; charge a flat, documented amount.
MEDIA_BLOCK_TOKENS = 1600


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def truncate_to_tokens(text: str, tokens: int) -> str:
    return text[: max(tokens, 0) * CHARS_PER_TOKEN]


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Segment:
    """One piece of the prompt in the order the API reads it: tools, system, messages."""

    tokens: int
    material: str
    cache_breakpoint: bool


def _block_text(block) -> str:
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return canonical_json(block)
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "thinking":
        return str(block.get("thinking", ""))
    if kind == "tool_use":
        return str(block.get("name", "")) + canonical_json(block.get("input", {}))
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return "".join(_block_text(item) for item in content)
        return str(content)
    return canonical_json({k: v for k, v in block.items() if k != "cache_control"})


def _block_tokens(block) -> int:
    if isinstance(block, dict) and block.get("type") in ("image", "document"):
        source = block.get("source") or {}
        if source.get("type") == "text":
            return estimate_tokens(str(source.get("data", "")))
        return MEDIA_BLOCK_TOKENS
    if isinstance(block, dict) and block.get("type") == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return sum(_block_tokens(item) for item in content) or 1
    return max(estimate_tokens(_block_text(block)), 1)


def _has_breakpoint(item) -> bool:
    return isinstance(item, dict) and bool(item.get("cache_control"))


def prompt_segments(body: dict) -> list[Segment]:
    segments = []
    for tool in body.get("tools") or []:
        text = canonical_json({k: v for k, v in tool.items() if k != "cache_control"})
        segments.append(Segment(estimate_tokens(text), text, _has_breakpoint(tool)))
    system = body.get("system")
    if isinstance(system, str) and system:
        segments.append(Segment(estimate_tokens(system), system, False))
    elif isinstance(system, list):
        for block in system:
            text = _block_text(block)
            segments.append(Segment(_block_tokens(block), text, _has_breakpoint(block)))
    for message in body.get("messages") or []:
        role = str(message.get("role", ""))
        content = message.get("content", "")
        blocks = [content] if isinstance(content, str) else list(content or [])
        for block in blocks:
            material = role + ":" + _block_text(block)
            segments.append(Segment(_block_tokens(block), material, _has_breakpoint(block)))
    if body.get("cache_control") and segments:
        # Automatic caching: a top-level cache_control puts the breakpoint on the last block.
        last = segments[-1]
        segments[-1] = Segment(last.tokens, last.material, True)
    return segments


def count_input_tokens(body: dict) -> int:
    return max(sum(segment.tokens for segment in prompt_segments(body)), 1)


class PromptCache:
    """Remembers prompt prefixes so a repeated prefix is billed as a cache read.

    Like the real cache it is keyed by model and exact prefix, and a prefix shorter than the
    model's minimum cacheable length is never cached. Entries live for `ttl_seconds` since
    their last use (Anthropic's default is five minutes). Thread-safe; bounded in size.
    """

    def __init__(self, *, max_entries: int = 10_000, ttl_seconds: float = 300.0, clock=None):
        import time

        self._entries: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._clock = clock or time.monotonic

    def _alive(self, key: str, now: float) -> bool:
        stamp = self._entries.get(key)
        return stamp is not None and now - stamp <= self._ttl

    def account(self, *, model: str, segments: list[Segment], min_tokens: int) -> tuple[int, int]:
        """Return (cache_creation_tokens, cache_read_tokens) and record the prefixes."""
        digest = hashlib.sha256(model.encode())
        prefixes = []  # (key, tokens) for every breakpoint, in order
        total = 0
        for segment in segments:
            digest.update(segment.material.encode())
            digest.update(b"\x00")
            total += segment.tokens
            if segment.cache_breakpoint and total >= min_tokens:
                prefixes.append((digest.copy().hexdigest(), total))
        if not prefixes:
            return 0, 0
        now = self._clock()
        with self._lock:
            read = 0
            for key, tokens in prefixes:
                if self._alive(key, now):
                    read = tokens
            last_tokens = prefixes[-1][1]
            for key, _tokens in prefixes:
                self._entries[key] = now
                self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return last_tokens - read, read
