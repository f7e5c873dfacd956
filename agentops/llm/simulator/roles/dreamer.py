"""The dreamer: reviews past sessions and proposes memory changes through a forced call to
the `propose_memory_changes` tool.

It reads what a real model would read: the sessions in the user message, one Markdown
section per session whose heading names its run or evaluation ("## Session: run 12 · ..."),
each line "Label: text". A sentence that recurs in two or more sessions becomes a proposal:
from lines labelled as feedback, lessons, reviews or overrides a lesson; from what the user
stated (lines labelled input, task or fact) a fact. The agents' own outputs prove nothing
by themselves and are skipped. Everything is deterministic: the same sessions give the same
proposals, in the same order.
"""

import re
from collections import OrderedDict

from ..conversation import Conversation
from ..writing import keywords
from .base import Reply

TOOL_NAME = "propose_memory_changes"
MAX_PROPOSALS = 8
MIN_WORDS = 4

SESSION_HEADING_RE = re.compile(r"^##\s+(.*)$")
SESSION_ID_RE = re.compile(r"\b(run|evaluation)\s*#?(\d+)", re.IGNORECASE)
STEP_RE = re.compile(r"\bstep\s*#?(\d+)", re.IGNORECASE)
EVALUATION_RE = re.compile(r"\bevaluation\s*#?(\d+)", re.IGNORECASE)
LABEL_RE = re.compile(r"^(?:[-*]\s+)?([^:\n]{1,80}):\s+(.+)$")
SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+")
FEEDBACK_WORDS = ("feedback", "lesson", "review", "override", "grader", "critique")
FACT_LABELS = ("input", "task", "fact", "note")


def _kind(label: str) -> str | None:
    lowered = label.lower()
    if any(word in lowered for word in FEEDBACK_WORDS):
        return "lesson"
    if lowered.startswith(FACT_LABELS):
        return "fact"
    return None


def _normalize(sentence: str) -> str:
    return " ".join(re.findall(r"[a-z0-9%$€£]+", sentence.lower()))


def _sentences(text: str) -> list[str]:
    out = []
    for sentence in SENTENCE_SPLIT_RE.split(text.strip()):
        sentence = sentence.strip().strip("\"“”'")
        if len(_normalize(sentence).split()) >= MIN_WORDS:
            out.append(sentence)
    return out


def _first_int(pattern, text):
    match = pattern.search(text)
    return int(match.group(1)) if match else None


def parse_sessions(text: str) -> list[dict]:
    """[{run_id, evaluation_id, lines: [(label, text)]}] for each section whose heading
    names a run or an evaluation."""
    sessions, current = [], None
    for raw in text.splitlines():
        heading = SESSION_HEADING_RE.match(raw.strip())
        if heading:
            found = SESSION_ID_RE.search(heading.group(1))
            current = None
            if found:
                kind, number = found.group(1).lower(), int(found.group(2))
                current = {
                    "run_id": number if kind == "run" else None,
                    "evaluation_id": number if kind == "evaluation" else None,
                    "lines": [],
                }
            if current is not None:
                sessions.append(current)
            continue
        if current is None or not raw.strip():
            continue
        labelled = LABEL_RE.match(raw.strip())
        if labelled:
            current["lines"].append((labelled.group(1).strip(), labelled.group(2).strip()))
        elif current["lines"]:
            # A continuation of the previous line's text.
            label, previous = current["lines"][-1]
            current["lines"][-1] = (label, f"{previous} {raw.strip()}")
    return sessions


def recurring_items(sessions: list[dict]) -> list[dict]:
    """Sentences found in two or more sessions, most widespread first."""
    found = OrderedDict()
    for session in sessions:
        for label, text in session["lines"]:
            kind = _kind(label)
            if kind is None:
                continue
            for sentence in _sentences(text):
                key = _normalize(sentence)
                item = found.setdefault(
                    key, {"sentence": sentence, "kind": kind, "evidence": {}, "order": len(found)}
                )
                if kind == "lesson":
                    item["kind"] = "lesson"
                key = (session["run_id"], session["evaluation_id"])
                if key not in item["evidence"]:
                    item["evidence"][key] = {
                        "run_id": session["run_id"],
                        "step_id": _first_int(STEP_RE, label),
                        "evaluation_id": session["evaluation_id"]
                        or _first_int(EVALUATION_RE, label),
                        "quote": sentence,
                    }
    recurring = [item for item in found.values() if len(item["evidence"]) >= 2]
    recurring.sort(key=lambda item: (-len(item["evidence"]), item["order"]))
    return recurring


def _title(sentence: str) -> str:
    title = sentence.rstrip(".!?")
    if len(title) > 80:
        title = title[:80].rsplit(" ", 1)[0] + "…"
    return title[:1].upper() + title[1:]


def proposal_for(item: dict) -> dict:
    evidence = [
        {key: value for key, value in entry.items() if value is not None}
        for entry in item["evidence"].values()
    ]
    runs = ", ".join(
        f"run {entry['run_id']}" if "run_id" in entry else f"evaluation {entry['evaluation_id']}"
        for entry in evidence
    )
    count = len(evidence)
    if item["kind"] == "lesson":
        content = (
            f"{item['sentence']}\n\nGraders or reviewers raised this in {count} sessions; "
            "check for it before giving an answer."
        )
        rationale = f"The same feedback recurs in {count} sessions ({runs})."
    else:
        content = f"{item['sentence']}\n\nStated in {count} sessions."
        rationale = f"The same fact recurs in {count} sessions ({runs})."
    tags = [item["kind"], *keywords(item["sentence"], 2)]
    return {
        "operation": "add",
        "title": _title(item["sentence"]),
        "content": content,
        "tags": list(dict.fromkeys(tags)),
        "rationale": rationale,
        "evidence": evidence,
    }


class DreamerRole:
    name = "dreamer"

    def matches(self, conversation: Conversation) -> bool:
        return conversation.tool_choice_type == "tool" and (
            conversation.tool_choice.get("name") == TOOL_NAME
        )

    def respond(self, conversation: Conversation) -> Reply:
        sessions = parse_sessions(conversation.task_text)
        items = recurring_items(sessions)[:MAX_PROPOSALS]
        changes = [proposal_for(item) for item in items]
        thinking = (
            f"I read {len(sessions)} session(s) and found {len(items)} recurring item(s) "
            "worth remembering."
        )
        return Reply(
            thinking=thinking,
            blocks=[{"type": "tool_use", "name": TOOL_NAME, "input": {"changes": changes}}],
        )
