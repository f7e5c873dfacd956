from dataclasses import dataclass, field
from typing import Protocol

from ..conversation import Conversation


@dataclass
class Reply:
    thinking: str = ""
    # Content blocks without ids: {"type": "text", "text": ...} or
    # {"type": "tool_use", "name": ..., "input": {...}}.
    blocks: list = field(default_factory=list)


class Role(Protocol):
    name: str

    def matches(self, conversation: Conversation) -> bool: ...

    def respond(self, conversation: Conversation) -> Reply: ...
