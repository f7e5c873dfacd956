"""The dreamer: read past sessions in chunks, ask the model for memory changes, and turn
its proposals into a reviewable changeset.

A dream is durable like a run: its session list and chunk boundaries are fixed in the row
when it starts working, each chunk's proposals are committed with the progress counter,
and a retry (after a transient model error, or a lost worker found by the tick) resumes at
the first unread chunk. The model call happens outside any transaction.

Sessions are the attached agents' finished runs (input, output) and their graded
evaluations (task, each iteration's feedback, the lesson of an iteration that turned
`needs_revision` into `satisfied`, and human reviews, overrides first).
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from agentops.llm.services import (
    DREAM_LABEL_PREFIX,
    PermanentModelError,
    RateBudgetExhausted,
    TransientModelError,
    model_call,
    retry_delay,
)
from agentops.outcomes.models import Evaluation, EvaluationStatus, Verdict
from agentops.runs.models import Run, RunStatus
from agentops.runs.services import team_budget_stop_reason
from agentops.teams.services import audit_record

from . import retrieval
from .models import (
    ChangeOperation,
    ChangeStatus,
    Dream,
    DreamChange,
    DreamStatus,
    DreamTrigger,
    Memory,
    MemoryStatus,
    MemoryStore,
)
from .services import (
    DreamAlreadyActive,
    dream_changes_decide_all,
    dream_start,
    memory_unchanged_by,
)

logger = logging.getLogger(__name__)

TOOL_NAME = "propose_memory_changes"
PROPOSE_TOOL = {
    "name": TOOL_NAME,
    "description": (
        "Propose changes to the memory store: add a new memory, update one, merge several "
        "into one, supersede memories with a new one, or retire memories that no longer "
        "hold. Cite the sessions each change comes from."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "changes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "operation": {
                            "type": "string",
                            "enum": [choice.value for choice in ChangeOperation],
                        },
                        "target_ids": {
                            "type": "array",
                            "items": {"type": "integer"},
                            "description": "Ids of existing memories the change is about.",
                        },
                        "title": {"type": "string", "maxLength": 200},
                        "content": {"type": "string", "description": "Markdown."},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "rationale": {"type": "string"},
                        "evidence": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "run_id": {"type": "integer"},
                                    "step_id": {"type": "integer"},
                                    "evaluation_id": {"type": "integer"},
                                    "quote": {"type": "string"},
                                },
                            },
                        },
                    },
                    "required": ["operation", "rationale", "evidence"],
                },
            }
        },
        "required": ["changes"],
    },
}
MAX_OUTPUT_TOKENS = 8192
FIELD_CHARS = 1500  # one field of one session, in the prompt
EXISTING_MEMORIES_IN_PROMPT = 100
EARLIER_CHANGES_COMPARED = 500  # the store's latest pending and rejected changes
# A run that failed or was stopped has no answer to learn from; its graded evaluation, if
# any, still is a session.
FINISHED_RUN_STATUSES = (RunStatus.SUCCEEDED,)
GRADED_EVALUATION_STATUSES = (EvaluationStatus.FINISHED, EvaluationStatus.PENDING_REVIEW)


# --- sessions ---------------------------------------------------------------------------------


def _flat(text, limit=FIELD_CHARS):
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + " …"


@dataclass
class Session:
    """One session as the dreamer reads it. Labels hold no colon: "Label: text" lines are
    split at the first one."""

    key: str  # "run:12" or "evaluation:7"
    heading: str
    lines: list = field(default_factory=list)  # [(label, text)]

    def render(self):
        body = [f"## Session: {self.heading}"]
        body.extend(f"{label}: {_flat(text)}" for label, text in self.lines if text.strip())
        return "\n".join(body) + "\n"


def _run_session(run):
    return Session(
        key=f"run:{run.pk}",
        heading=f"run {run.pk} · agent {run.agent.name} · {run.get_status_display().lower()} · "
        f"{run.created_at:%Y-%m-%d}",
        lines=[("Input", run.input), ("Output", run.output), ("Error", run.error)],
    )


def _evaluation_session(evaluation):
    verdict = evaluation.effective_verdict or evaluation.verdict
    lines = [("Task", evaluation.task)]
    iterations = list(evaluation.iterations.order_by("number"))
    for index, iteration in enumerate(iterations):
        score = (
            f", score {iteration.weighted_score}" if iteration.weighted_score is not None else ""
        )
        lines.append(
            (
                f"Feedback (evaluation {evaluation.pk}, iteration {iteration.number}, "
                f"{iteration.verdict or 'ungraded'}{score})",
                iteration.feedback,
            )
        )
        following = iterations[index + 1] if index + 1 < len(iterations) else None
        if (
            following is not None
            and iteration.verdict == Verdict.NEEDS_REVISION
            and following.verdict == Verdict.SATISFIED
        ):
            lines.append(
                (
                    f"Lesson (evaluation {evaluation.pk}, needs_revision → satisfied after "
                    f"iteration {iteration.number}'s feedback)",
                    iteration.feedback,
                )
            )
    if iterations:
        lines.append(("Final output", iterations[-1].output))
    for review in evaluation.reviews.order_by("created_at"):
        if review.agreed:
            label = f"Human review (evaluation {evaluation.pk}, agreed, {review.verdict})"
        else:
            label = (
                f"Human override (evaluation {evaluation.pk}, grader {review.grader_verdict} → "
                f"reviewer {review.verdict})"
            )
        lines.append((label, review.note))
    agent = evaluation.agent.name if evaluation.agent_id else "no agent"
    return Session(
        key=f"evaluation:{evaluation.pk}",
        heading=f"evaluation {evaluation.pk} · agent {agent} · verdict {verdict or 'none'} · "
        f"{evaluation.created_at:%Y-%m-%d}",
        lines=lines,
    )


def _session_agents(dream):
    chosen = list(dream.agents.all())
    if chosen:
        return chosen
    return [attachment.agent for attachment in dream.store.attachments.select_related("agent")]


def _covers_the_store(dream):
    """Whether the dream read what a dream with no filters reads: every attached agent's
    sessions, with no date range or verdict filter. Only such a dream moves the store's
    "since the last dream" mark; a narrower one must not hide the sessions it skipped."""
    if dream.since or dream.until or dream.verdict:
        return False
    chosen = set(dream.agents.values_list("pk", flat=True))
    attached = set(dream.store.attachments.values_list("agent_id", flat=True))
    return not chosen or chosen >= attached


def gather_session_keys(dream, *, before):
    """The sessions a dream reads, oldest first, as "run:<id>" / "evaluation:<id>" keys."""
    agents = _session_agents(dream)
    runs = Run.objects.filter(
        team=dream.team, agent__in=agents, status__in=FINISHED_RUN_STATUSES, created_at__lt=before
    )
    evaluations = Evaluation.objects.filter(
        team=dream.team,
        agent__in=agents,
        status__in=GRADED_EVALUATION_STATUSES,
        created_at__lt=before,
    )
    explicit_range = dream.since or dream.until
    if dream.since:
        runs = runs.filter(created_at__date__gte=dream.since)
        evaluations = evaluations.filter(created_at__date__gte=dream.since)
    if dream.until:
        runs = runs.filter(created_at__date__lte=dream.until)
        evaluations = evaluations.filter(created_at__date__lte=dream.until)
    if not explicit_range and dream.store.last_dream_at:
        runs = runs.filter(created_at__gte=dream.store.last_dream_at)
        evaluations = evaluations.filter(created_at__gte=dream.store.last_dream_at)
    if dream.verdict:
        # Runs carry no verdict of their own: a verdict filter reads graded sessions only.
        runs = runs.none()
        evaluations = [e for e in evaluations if e.effective_verdict == dream.verdict]
    limit = settings.AGENTOPS_DREAM_MAX_SESSIONS
    evaluations = list(evaluations)
    # A graded run is one session, not two: its evaluation holds the run's task, the
    # grader's feedback and the final output.
    graded_runs = {evaluation.run_id for evaluation in evaluations if evaluation.run_id}
    dated = [
        (run.created_at, f"run:{run.pk}")
        for run in runs.only("pk", "created_at")
        if run.pk not in graded_runs
    ]
    dated += [(e.created_at, f"evaluation:{e.pk}") for e in evaluations]
    dated.sort()
    return [key for _, key in dated[-limit:]]


def load_sessions(keys):
    run_ids = [int(key.split(":")[1]) for key in keys if key.startswith("run:")]
    evaluation_ids = [int(key.split(":")[1]) for key in keys if key.startswith("evaluation:")]
    sessions = {}
    for run in Run.objects.filter(pk__in=run_ids).select_related("agent"):
        sessions[f"run:{run.pk}"] = _run_session(run)
    for evaluation in Evaluation.objects.filter(pk__in=evaluation_ids).select_related("agent"):
        sessions[f"evaluation:{evaluation.pk}"] = _evaluation_session(evaluation)
    return [sessions[key] for key in keys if key in sessions]


def plan_chunks(sessions, *, chunk_chars):
    """Session keys grouped into chunks of about `chunk_chars` characters of prompt."""
    chunks, current, size = [], [], 0
    for session in sessions:
        length = len(session.render())
        if current and size + length > chunk_chars:
            chunks.append(current)
            current, size = [], 0
        current.append(session.key)
        size += length
    if current:
        chunks.append(current)
    return chunks


# --- the prompt -------------------------------------------------------------------------------


def _existing_memories(store):
    return list(
        Memory.objects.filter(store=store, status=MemoryStatus.ACTIVE).order_by("-updated_at")[
            :EXISTING_MEMORIES_IN_PROMPT
        ]
    )


def dream_system_prompt(dream, existing):
    store = dream.store
    lines = [
        f"You are the dreamer for the memory store “{store.name}”. You review past sessions "
        "of AI agents (their tasks, outputs, grader feedback and human reviews) and propose "
        "changes to the store's curated memories, so later runs do better.",
        "",
        "Propose a memory only for a lesson or fact that recurs or clearly generalizes; "
        "prefer lessons from feedback that turned a failing answer into a passing one, and "
        "from human overrides of the grader. Update, merge, supersede or retire existing "
        "memories (by their ids) instead of adding near-duplicates. Give every change a "
        "rationale and cite its evidence by run or evaluation id. Call "
        f"`{TOOL_NAME}` exactly once; an empty list is a valid answer.",
    ]
    if store.description.strip():
        lines += ["", f"What the store is for: {store.description.strip()}"]
    if store.instructions.strip():
        lines += ["", f"How agents use it: {store.instructions.strip()}"]
    if dream.instructions.strip():
        lines += ["", f"Instructions for this dream: {dream.instructions.strip()}"]
    lines += ["", "# Existing active memories"]
    if existing:
        for memory in existing:
            lines.append(f"- [id {memory.pk}] {memory.title}: {_flat(memory.content, 300)}")
    else:
        lines.append("(none yet)")
    return "\n".join(lines)


def dream_user_message(dream, sessions, *, chunk_number, chunk_total):
    header = (
        f"Sessions for the memory store “{dream.store.name}”, part {chunk_number} of "
        f"{chunk_total}. Propose memory changes with `{TOOL_NAME}`.\n\n"
    )
    return header + "\n".join(session.render() for session in sessions)


# --- proposals --------------------------------------------------------------------------------


def _ints(values):
    return [v for v in values or [] if isinstance(v, int) and not isinstance(v, bool)]


def clean_proposals(tool_input, *, session_keys, store):
    """The model's proposed changes that are well formed, with evidence limited to the
    sessions it was shown and targets limited to the store's active memories."""
    shown_runs = {int(k.split(":")[1]) for k in session_keys if k.startswith("run:")}
    shown_evaluations = {int(k.split(":")[1]) for k in session_keys if k.startswith("evaluation:")}
    active = set(
        Memory.objects.filter(store=store, status=MemoryStatus.ACTIVE).values_list("pk", flat=True)
    )
    cleaned = []
    changes = tool_input.get("changes") if isinstance(tool_input, dict) else None
    for change in changes if isinstance(changes, list) else []:
        if not isinstance(change, dict):
            continue
        operation = change.get("operation")
        if operation not in ChangeOperation.values:
            continue
        targets = [t for t in _ints(change.get("target_ids")) if t in active]
        title = str(change.get("title") or "").strip()[:200]
        content = str(change.get("content") or "").strip()
        if operation in (ChangeOperation.ADD, ChangeOperation.SUPERSEDE) and not (
            title and content
        ):
            continue
        if operation != ChangeOperation.ADD and not targets:
            continue
        evidence = []
        for item in change.get("evidence") or []:
            if not isinstance(item, dict):
                continue
            run_id = item.get("run_id") if item.get("run_id") in shown_runs else None
            evaluation_id = (
                item.get("evaluation_id")
                if item.get("evaluation_id") in shown_evaluations
                else None
            )
            if run_id is None and evaluation_id is None:
                continue
            entry = {"run_id": run_id, "evaluation_id": evaluation_id}
            if isinstance(item.get("step_id"), int):
                entry["step_id"] = item["step_id"]
            entry["quote"] = str(item.get("quote") or "")[:500]
            evidence.append(entry)
        if not evidence:
            continue  # a change must rest on sessions the dream actually read
        tags = change.get("tags") if isinstance(change.get("tags"), list) else []
        cleaned.append(
            {
                "operation": operation,
                "target_ids": targets,
                "title": title,
                "content": content,
                "tags": [str(tag) for tag in tags][:10],
                "rationale": str(change.get("rationale") or "").strip(),
                "evidence": evidence,
            }
        )
    return cleaned


def _merged_content(existing, addition):
    """The existing content plus the paragraphs of `addition` it does not already say."""
    known = {" ".join(retrieval.normalized_words(p)) for p in existing.split("\n\n")}
    extra = [
        paragraph
        for paragraph in addition.split("\n\n")
        if paragraph.strip() and " ".join(retrieval.normalized_words(paragraph)) not in known
    ]
    return "\n\n".join([existing.strip(), *extra]) if extra else existing.strip()


def _evidence_key(item):
    # One piece of evidence per session (and step): a second quote from it adds nothing.
    return (item.get("run_id"), item.get("evaluation_id"), item.get("step_id"))


def _add_evidence(target, items):
    seen = {_evidence_key(item) for item in target["evidence"]}
    for item in items:
        if _evidence_key(item) not in seen:
            target["evidence"].append(item)
            seen.add(_evidence_key(item))


def build_changeset(proposals, existing):
    """Deduplicate the dream's proposals into changes: an addition that nearly repeats an
    earlier addition joins it; one that nearly repeats an existing memory becomes a merge
    into that memory; a memory is the target of at most one change."""
    by_id = {memory.pk: memory for memory in existing}
    changes, taken = [], set()
    for proposal in proposals:
        operation = proposal["operation"]
        if operation == ChangeOperation.ADD:
            earlier = next(
                (
                    change
                    for change in changes
                    if change["from_add"]
                    and retrieval.similarity(
                        change["proposed_title"],
                        change["proposed_content"],
                        proposal["title"],
                        proposal["content"],
                    )
                    >= retrieval.NEAR_DUPLICATE_THRESHOLD
                ),
                None,
            )
            if earlier is not None:
                _add_evidence(earlier, proposal["evidence"])
                continue
            duplicate, score = retrieval.nearest_duplicate(
                proposal["title"], proposal["content"], existing
            )
            change = {
                **proposal,
                "from_add": True,
                "proposed_title": proposal["title"],
                "proposed_content": proposal["content"],
                "similarity": None,
            }
            if duplicate is not None:
                already = next((c for c in changes if duplicate.pk in c["target_ids"]), None)
                if already is not None:
                    _add_evidence(already, proposal["evidence"])
                    continue
                change.update(
                    operation=ChangeOperation.MERGE,
                    target_ids=[duplicate.pk],
                    title=duplicate.title,
                    content=_merged_content(duplicate.content, proposal["content"]),
                    tags=sorted(set(duplicate.tags or []) | set(proposal["tags"])),
                    similarity=round(score, 3),
                    rationale=(
                        f"{proposal['rationale']} It nearly repeats the existing memory "
                        f"“{duplicate.title}” (similarity {score:.2f}), so it is merged into "
                        "that memory instead of added."
                    ).strip(),
                )
                taken.add(duplicate.pk)
            changes.append(change)
            continue
        targets = [t for t in proposal["target_ids"] if t in by_id and t not in taken]
        if len(targets) != len(proposal["target_ids"]) or not targets:
            continue  # another change of this dream already changes one of these memories
        taken.update(targets)
        changes.append(
            {
                **proposal,
                "target_ids": targets,
                "from_add": False,
                "proposed_title": proposal["title"],
                "proposed_content": proposal["content"],
                "similarity": None,
            }
        )
    # A merge or update that would leave its one memory as it is proposes nothing.
    return [change for change in changes if not _leaves_unchanged(change, by_id)]


def _leaves_unchanged(change, by_id):
    if change["operation"] not in (ChangeOperation.UPDATE, ChangeOperation.MERGE):
        return False
    if len(change["target_ids"]) != 1:
        return False  # a merge of several memories supersedes the others
    memory = by_id[change["target_ids"][0]]
    return memory_unchanged_by(memory, change["title"], change["content"], change["tags"])


def drop_repeated(changes, earlier):
    """The changes that do not repeat one of `earlier` (DreamChange rows of the store's
    other dreams still pending or rejected): a reviewer decides a change once, not again
    for every dream that reads the same sessions."""

    def repeated(change):
        same = [
            row
            for row in earlier
            if row.operation == change["operation"]
            and sorted(entry.get("id") for entry in row.before or [])
            == sorted(change["target_ids"])
        ]
        if change["operation"] == ChangeOperation.RETIRE:
            return bool(same)
        return retrieval.nearest_duplicate(change["title"], change["content"], same)[0] is not None

    return [change for change in changes if not repeated(change)]


def _snapshot(memory):
    return {
        "id": memory.pk,
        "title": memory.title,
        "content": memory.content,
        "tags": list(memory.tags or []),
        "status": memory.status,
        "version": memory.current_version.number if memory.current_version_id else None,
    }


# --- executing a dream ------------------------------------------------------------------------


def _fail(dream_id, message):
    now = timezone.now()
    with transaction.atomic():
        dream = Dream.objects.select_for_update().select_related("store").get(pk=dream_id)
        if not dream.is_active:
            return
        dream.status = DreamStatus.FAILED
        dream.error = message
        dream.finished_at = now
        dream.save()
        audit_record(
            team=dream.team,
            actor=None,
            actor_label=dream.label,
            verb="dream.fail",
            obj=dream,
            after={"error": message},
        )


def _requeue(dream_id, error, *, delay):
    """Back to the queue after a transient failure; gives up after too many in a row."""
    dream = Dream.objects.get(pk=dream_id)
    if dream.attempts + 1 >= settings.AGENTOPS_DREAM_MAX_ATTEMPTS:
        _fail(
            dream_id,
            f"The model call failed {dream.attempts + 1} times in a row; giving up. "
            f"Last error: {error}",
        )
        return None
    Dream.objects.filter(pk=dream_id, status=DreamStatus.RUNNING).update(
        status=DreamStatus.QUEUED,
        attempts=F("attempts") + 1,
        error=f"Retrying in {delay:.1f} s: {error}",
    )
    return delay


def _plan(dream):
    """Fix the dream's sessions and chunks on its first execution."""
    before = dream.sessions_before or dream.created_at
    keys = gather_session_keys(dream, before=before)
    chunks = plan_chunks(load_sessions(keys), chunk_chars=settings.AGENTOPS_DREAM_CHUNK_CHARS)
    Dream.objects.filter(pk=dream.pk, status=DreamStatus.RUNNING).update(
        session_run_ids=keys,
        chunks=chunks,
        sessions_before=before,
        progress_total=len(chunks),
        heartbeat_at=timezone.now(),
    )
    dream.refresh_from_db()


def _read_chunk(dream, index):
    """One model call over chunk `index`. Returns the result and the cleaned proposals (None
    when the model refused the part), or raises the model layer's errors."""
    keys = dream.chunks[index]
    sessions = load_sessions(keys)
    existing = _existing_memories(dream.store)
    result = model_call(
        team=dream.team,
        model=dream.model,
        system=dream_system_prompt(dream, existing),
        messages=[
            {
                "role": "user",
                "content": dream_user_message(
                    dream, sessions, chunk_number=index + 1, chunk_total=len(dream.chunks)
                ),
            }
        ],
        tools=[PROPOSE_TOOL],
        tool_choice={"type": "tool", "name": TOOL_NAME},
        max_tokens=MAX_OUTPUT_TOKENS,
        usage_label=f"{DREAM_LABEL_PREFIX}{dream.pk}",
    )
    if result.stop_reason == "refusal":
        return result, None  # the model declined this part; the others still count
    call = next((block for block in result.tool_uses if block.get("name") == TOOL_NAME), None)
    if call is None:
        raise PermanentModelError(
            f"The model did not call {TOOL_NAME} (stop reason: {result.stop_reason}).",
            kind="no_tool_call",
        )
    return result, clean_proposals(call.get("input"), session_keys=keys, store=dream.store)


def _finish(dream_id):
    parts = Dream.objects.get(pk=dream_id).raw_proposals
    refused = sum(1 for chunk in parts if chunk.get("refused"))
    if parts and refused == len(parts):
        _fail(dream_id, "The model declined to review the sessions (it refused every part).")
        return None
    with transaction.atomic():
        dream = Dream.objects.select_for_update().select_related("store", "team").get(pk=dream_id)
        if dream.status != DreamStatus.RUNNING:
            return dream
        store = MemoryStore.objects.select_for_update().get(pk=dream.store_id)
        existing = list(
            Memory.objects.filter(store=store, status=MemoryStatus.ACTIVE).select_related(
                "current_version"
            )
        )
        by_id = {memory.pk: memory for memory in existing}
        proposals = [p for chunk in dream.raw_proposals for p in chunk.get("changes", [])]
        earlier = (
            DreamChange.objects.filter(
                dream__store=store, status__in=(ChangeStatus.PENDING, ChangeStatus.REJECTED)
            )
            .exclude(dream=dream)
            .only("operation", "before", "title", "content")
            .order_by("-pk")[:EARLIER_CHANGES_COMPARED]
        )
        changes = drop_repeated(build_changeset(proposals, existing), list(earlier))
        for position, change in enumerate(changes):
            row = DreamChange.objects.create(
                dream=dream,
                position=position,
                operation=change["operation"],
                before=[_snapshot(by_id[t]) for t in change["target_ids"]],
                title=change["title"],
                content=change["content"],
                tags=change["tags"],
                rationale=change["rationale"],
                evidence=change["evidence"],
                similarity=change["similarity"],
            )
            row.targets.set(change["target_ids"])
        dream.status = DreamStatus.SUCCEEDED
        dream.finished_at = timezone.now()
        dream.error = (
            f"The model declined {refused} of {len(dream.raw_proposals)} parts; their sessions "
            "gave no proposals."
            if refused
            else ""
        )
        dream.save()
        if _covers_the_store(dream):
            store.last_dream_at = dream.sessions_before
            store.save(update_fields=["last_dream_at"])
        audit_record(
            team=dream.team,
            actor=None,
            actor_label=dream.label,
            verb="dream.finish",
            obj=dream,
            after={
                "sessions": len(dream.session_run_ids),
                "chunks": dream.progress_total,
                "changes": dream.changes.count(),
            },
        )
    if store.auto_apply:
        dream_changes_decide_all(dream=dream, actor=None, approve=True, auto=True)
    return dream


def dream_execute(*, dream_id):
    """Claim a queued dream and work through its unread chunks. Returns None when the dream
    is done (or not this call's to do), or the seconds to wait before executing it again
    after a transient failure (the dream is queued again)."""
    claimed = Dream.objects.filter(pk=dream_id, status=DreamStatus.QUEUED).update(
        status=DreamStatus.RUNNING, heartbeat_at=timezone.now()
    )
    if not claimed:
        return None
    dream = Dream.objects.select_related("store", "team").get(pk=dream_id)
    if dream.started_at is None:
        Dream.objects.filter(pk=dream_id).update(started_at=timezone.now())
    try:
        if not dream.progress_total and not dream.chunks:
            _plan(dream)
        while dream.progress_done < len(dream.chunks):
            index = dream.progress_done
            # A dream's calls count toward the team's monthly budget like a run's.
            over_budget = team_budget_stop_reason(dream.team)
            if over_budget:
                _fail(dream_id, f"Stopped before part {index + 1}: {over_budget}")
                return None
            try:
                result, proposals = _read_chunk(dream, index)
            except RateBudgetExhausted as error:
                # Waiting for the team's rate budget is normal for a large dream.
                delay = error.wait_s or retry_delay(attempt=dream.attempts + 1, retry_after=None)
                return _requeue(dream_id, error, delay=delay)
            except TransientModelError as error:
                delay = retry_delay(attempt=dream.attempts + 1, retry_after=error.retry_after)
                return _requeue(dream_id, error, delay=delay)
            except PermanentModelError as error:
                _fail(dream_id, f"The model call for part {index + 1} failed: {error}")
                return None
            usage = result.usage or {}
            updated = Dream.objects.filter(
                pk=dream_id, status=DreamStatus.RUNNING, progress_done=index
            ).update(
                raw_proposals=[
                    *dream.raw_proposals,
                    {"chunk": index, "changes": proposals or [], "refused": proposals is None},
                ],
                progress_done=index + 1,
                attempts=0,
                error="",
                input_tokens=F("input_tokens") + int(usage.get("input_tokens") or 0),
                output_tokens=F("output_tokens") + int(usage.get("output_tokens") or 0),
                simulated=dream.simulated or bool(result.simulated),
                heartbeat_at=timezone.now(),
            )
            if not updated:
                return None  # the dream was taken over (a lost-worker retry); its call counts
            dream.refresh_from_db()
        _finish(dream_id)
    except Exception as error:
        logger.exception("Dream %s failed unexpectedly", dream_id)
        _fail(dream_id, f"Internal error: {error!r}")
    return None


def dream_execute_inline(*, dream_id, sleep=None):
    """Execute a dream in this process until it ends, waiting out retry delays
    (`manage.py dream --wait`, the demo, tests)."""
    import time

    sleep = sleep or time.sleep
    for _ in range(settings.AGENTOPS_DREAM_MAX_ATTEMPTS * 50):
        delay = dream_execute(dream_id=dream_id)
        dream = Dream.objects.get(pk=dream_id)
        if not dream.is_active:
            return dream
        if delay is None and dream.status == DreamStatus.RUNNING:
            return dream  # another process is working on it
        sleep(delay or 0)
    return Dream.objects.get(pk=dream_id)


# --- the tick: lost workers and schedules -----------------------------------------------------


def dreams_tick(*, now=None):
    """Re-queue dreams whose worker vanished, re-send queued dreams whose message may be
    lost, and start the scheduled dreams that are due. Returns (requeued, started)."""
    from .tasks import dream_execute_task

    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.AGENTOPS_DREAM_STALE_S)
    requeued = 0
    for dream in Dream.objects.filter(status=DreamStatus.RUNNING, heartbeat_at__lt=stale_before):
        if dream.attempts + 1 >= settings.AGENTOPS_DREAM_MAX_ATTEMPTS:
            _fail(dream.pk, "Gave up: the worker running this dream was lost too many times.")
            continue
        if Dream.objects.filter(
            pk=dream.pk, status=DreamStatus.RUNNING, heartbeat_at__lt=stale_before
        ).update(
            status=DreamStatus.QUEUED,
            attempts=F("attempts") + 1,
            heartbeat_at=now,
            error="Re-queued: its worker stopped reporting progress.",
        ):
            dream_execute_task.delay(dream.pk)
            requeued += 1
    # A queued dream waiting out a retry delay touched its heartbeat when it last ran, so
    # only one silent for longer than the stale limit is sent again.
    silent = Q(heartbeat_at__lt=stale_before) | Q(
        heartbeat_at__isnull=True, created_at__lt=stale_before
    )
    for dream_id in Dream.objects.filter(silent, status=DreamStatus.QUEUED).values_list(
        "pk", flat=True
    ):
        dream_execute_task.delay(dream_id)  # harmless if it is already on its way
    started = 0
    for store in MemoryStore.objects.filter(dream_every_hours__isnull=False):
        latest = store.dreams.order_by("-created_at").values_list("created_at", flat=True).first()
        if latest and latest > now - timedelta(hours=store.dream_every_hours):
            continue
        try:
            dream_start(store=store, actor=None, trigger=DreamTrigger.SCHEDULE)
        except (DreamAlreadyActive, ValidationError):
            continue
        started += 1
    return requeued, started
