"""Line diffs of memory text, for version history and dream changes (difflib)."""

import difflib


def line_diff(before, after):
    """[(kind, text)] with kind in add/del/same/hunk; [] when the texts are equal."""
    old = (before or "").splitlines()
    new = (after or "").splitlines()
    if old == new:
        return []
    lines = []
    # The first two lines are the ---/+++ file headers.
    for line in list(difflib.unified_diff(old, new, lineterm="", n=3))[2:]:
        if line.startswith("@@"):
            lines.append(("hunk", line))
        elif line.startswith("+"):
            lines.append(("add", line[1:]))
        elif line.startswith("-"):
            lines.append(("del", line[1:]))
        else:
            lines.append(("same", line[1:]))
    return lines


def memory_text(title, content, tags=()):
    text = f"# {title}\n\n{(content or '').strip()}"
    if tags:
        text += f"\n\ntags: {', '.join(tags)}"
    return text


def change_diff(change):
    """Before and after of a dream change, as one diff over every memory it touches."""
    before = "\n\n".join(
        memory_text(entry.get("title", ""), entry.get("content", ""), entry.get("tags") or [])
        for entry in change.before or []
    )
    if change.operation == "retire":
        after = ""
    elif change.operation in ("update", "merge"):
        first = (change.before or [{}])[0]
        after = memory_text(
            change.title or first.get("title", ""),
            change.content or first.get("content", ""),
            change.tags or first.get("tags") or [],
        )
    else:
        after = memory_text(change.title, change.content, change.tags)
    return line_diff(before, after)
