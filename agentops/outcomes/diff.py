"""A line diff between two successive outputs, for the iteration timeline."""

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class DiffLine:
    op: str  # "same", "add" or "del"
    text: str

    @property
    def sign(self):
        return {"add": "+", "del": "−"}.get(self.op, " ")


def line_diff(old, new):
    """The lines of `new` against `old`: unchanged, added and removed, in reading order."""
    old_lines, new_lines = (old or "").splitlines(), (new or "").splitlines()
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    lines = []
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        if tag == "equal":
            lines.extend(DiffLine("same", text) for text in old_lines[a1:a2])
            continue
        if tag in ("replace", "delete"):
            lines.extend(DiffLine("del", text) for text in old_lines[a1:a2])
        if tag in ("replace", "insert"):
            lines.extend(DiffLine("add", text) for text in new_lines[b1:b2])
    return lines
