"""Differences between two agent versions, field by field (difflib, unified form)."""

import difflib
from dataclasses import dataclass, field

from .models import VERSIONED_FIELDS, AgentVersion

LABELS = {
    "name": "Name",
    "description": "Description",
    "model": "Model",
    "system_prompt": "System prompt",
    "max_tokens": "Max tokens",
    "temperature": "Temperature",
    "thinking_budget": "Extended thinking budget",
    "tools": "Tools",
}


@dataclass
class FieldDiff:
    field: str
    label: str
    lines: list = field(default_factory=list)  # (kind, text): kind in hunk/add/del/same

    @property
    def changed(self):
        return bool(self.lines)


def field_lines(name, value):
    """A field's value as the lines a diff compares."""
    if name == "tools":
        return [f"{entry['name']}: {entry['permission']}" for entry in value or []] or ["(none)"]
    if value is None or value == "":
        return ["(not set)"]
    return str(value).splitlines() or [""]


def version_diff(old: AgentVersion, new: AgentVersion) -> list[FieldDiff]:
    """One FieldDiff per versioned field; unchanged fields have no lines."""
    diffs = []
    for name in VERSIONED_FIELDS:
        before = field_lines(name, getattr(old, name))
        after = field_lines(name, getattr(new, name))
        result = FieldDiff(field=name, label=LABELS[name])
        if before != after:
            # The first two lines are the ---/+++ file headers.
            for line in list(difflib.unified_diff(before, after, lineterm="", n=3))[2:]:
                if line.startswith("@@"):
                    result.lines.append(("hunk", line))
                elif line.startswith("+"):
                    result.lines.append(("add", line[1:]))
                elif line.startswith("-"):
                    result.lines.append(("del", line[1:]))
                else:
                    result.lines.append(("same", line[1:]))
        diffs.append(result)
    return diffs
