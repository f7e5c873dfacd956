"""Memory in runs: the memories a thread is given, and the memory_search and memory_propose
tools. Connected to the run engine through its model-context hook and to the tools
registry; imported once by MemoryConfig.ready()."""

from django.db import IntegrityError, transaction

from agentops import fastsql
from agentops.agents.tools import ToolFailure, ToolOutcome, ToolSpec, register
from agentops.runs.models import Step
from agentops.runs.services import ModelContext, on_model_context

from . import retrieval, services
from .models import Memory, MemoryStatus, MemoryStore, MemoryUse, StoreAttachment

SEARCH_LIMIT_MAX = 10


def _first_user_text(thread):
    for message in thread.messages or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return " ".join(
            block.get("text", "") for block in content or [] if block.get("type") == "text"
        )
    return ""


def _record_uses(thread):
    """Choose, once, what each attached store gives this thread, and keep it."""
    selections = retrieval.select_for_prompt(
        thread.agent_version, _first_user_text(thread), run_id=thread.run_id
    )
    if not selections:
        return []  # no store attached: nothing recorded, nothing to read back
    for selection in selections:
        try:
            with transaction.atomic():
                MemoryUse.objects.create(
                    run_id=thread.run_id,
                    thread=thread,
                    store=selection.attachment.store,
                    held_out=selection.held_out,
                    can_propose=selection.attachment.can_propose,
                    memory_ids=[memory.pk for memory in selection.memories],
                    text=selection.text,
                )
        except IntegrityError:
            pass  # recorded meanwhile by a retry of the same step: the first choice stands
    return list(MemoryUse.objects.filter(thread=thread).select_related("store"))


def _kept_and_attached_sql():
    table, column = fastsql.table, fastsql.column
    return (
        f"SELECT EXISTS (SELECT 1 FROM {table(MemoryUse)} "  # noqa: S608
        f"WHERE {column(MemoryUse, 'thread')} = %s), "
        f"EXISTS (SELECT 1 FROM {table(StoreAttachment)} a JOIN {table(MemoryStore)} s "
        f"ON s.{column(MemoryStore, 'id')} = a.{column(StoreAttachment, 'store')} "
        f"WHERE a.{column(StoreAttachment, 'agent')} = %s "
        f"AND s.{column(MemoryStore, 'team')} = %s)"
    )


def uses_of(thread):
    # Most agents have no store: one prepared statement says so (no uses kept, nothing
    # attached, as attachments_for reads them) before the uses themselves are read. Every
    # sub-agent of a fan-out asks once; compiling it with the ORM cost more than running it.
    agent = thread.agent_version.agent
    sql = fastsql.cached(("memory kept and attached",), _kept_and_attached_sql)
    ((row, _),) = fastsql.batch((sql, [thread.pk, agent.pk, agent.team_id]))
    kept, attached = bool(row[0]), bool(row[1])
    if kept:
        return list(MemoryUse.objects.filter(thread=thread).select_related("store"))
    return _record_uses(thread) if attached else []


@on_model_context
def memory_context(*, thread):
    uses = uses_of(thread)
    if not uses:
        return None
    given = [use for use in uses if not use.held_out]
    tools = []
    if given:
        tools.append(SEARCH_SPEC.as_tool_param())
    if any(use.can_propose for use in given):
        tools.append(PROPOSE_SPEC.as_tool_param())
    return ModelContext(
        system=retrieval.prompt_text([use.text for use in given]),
        tools=tuple(tools),
        request={
            "memory_ids": [memory_id for use in given for memory_id in use.memory_ids],
            "memory_held_out_stores": [use.store_id for use in uses if use.held_out],
        },
    )


def _step_uses(context):
    """The stores the calling run's thread was given (not held out)."""
    step = (
        Step.objects.filter(pk=context.step_id, run__team=context.team)
        .select_related("thread__agent_version__agent", "run")
        .first()
        if context.step_id is not None
        else None
    )
    if step is None:
        raise ToolFailure("memory tools work only inside a run.")
    uses = [use for use in uses_of(step.thread) if not use.held_out]
    if not uses:
        raise ToolFailure(
            "no memory store is attached to this agent (or this run is held out for comparison)."
        )
    return step, uses


def _pick_store(uses, slug):
    if slug:
        use = next((use for use in uses if use.store.slug == slug), None)
        if use is None:
            names = ", ".join(use.store.slug for use in uses)
            raise ToolFailure(f"no attached memory store {slug!r}; attached: {names}.")
        return [use]
    return uses


def _search(context, tool_input):
    _, uses = _step_uses(context)
    limit = min(int(tool_input.get("limit") or 5), SEARCH_LIMIT_MAX)
    found = []
    for use in _pick_store(uses, tool_input.get("store", "")):
        found.extend(
            (use.store, memory)
            for memory in retrieval.memory_search(use.store, tool_input["query"], limit)
        )
    if not found:
        return ToolOutcome(content=f"No active memory matches {tool_input['query']!r}.")
    lines = [f"{len(found[:limit])} memor{'y' if len(found) == 1 else 'ies'} found:", ""]
    for store, memory in found[:limit]:
        lines.append(f"{retrieval.render_memory(memory)}(store: {store.slug})\n")
    return ToolOutcome(content="\n".join(lines))


def _propose(context, tool_input):
    step, uses = _step_uses(context)
    writable = [use for use in uses if use.can_propose]
    if not writable:
        raise ToolFailure("this agent may read its memory stores but not propose to them.")
    candidates = _pick_store(writable, tool_input.get("store", ""))
    if len(candidates) > 1:
        names = ", ".join(use.store.slug for use in candidates)
        raise ToolFailure(f"several stores take proposals; name one with `store`: {names}.")
    store = candidates[0].store
    duplicate, _ = retrieval.nearest_duplicate(
        tool_input["title"],
        tool_input["content"],
        Memory.objects.filter(store=store, status__in=[MemoryStatus.ACTIVE, MemoryStatus.PROPOSED]),
    )
    if duplicate is not None:
        return ToolOutcome(
            content=f"Not proposed: memory {duplicate.pk} “{duplicate.title}” already says this "
            f"({duplicate.get_status_display().lower()})."
        )
    memory = services.memory_propose(
        store=store,
        title=tool_input["title"],
        content=tool_input["content"],
        tags=tool_input.get("tags") or [],
        provenance={"run_ids": [step.run_id], "step_ids": [step.pk]},
        actor_label=f"run #{step.run_id}",
    )
    return ToolOutcome(
        content=f"Proposed memory {memory.pk} “{memory.title}” to the store {store.slug}. It "
        "waits for a reviewer's approval and is not used until then."
    )


SEARCH_SPEC = register(
    ToolSpec(
        name="memory_search",
        description=(
            "Search the active memories of the memory stores attached to this agent (its "
            "system prompt already holds the most relevant ones). Only agents attached to a "
            "memory store can use it."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 500},
                "limit": {"type": "integer", "minimum": 1, "maximum": SEARCH_LIMIT_MAX},
                "store": {"type": "string", "description": "A store's slug, to search one."},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        run=_search,
    )
)

PROPOSE_SPEC = register(
    ToolSpec(
        name="memory_propose",
        description=(
            "Propose a new memory (a lesson or fact worth keeping for later runs) to a memory "
            "store this agent may write to. A reviewer approves it before any run uses it."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 200},
                "content": {"type": "string", "minLength": 1, "maxLength": 5000},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 40}},
                "store": {"type": "string", "description": "A store's slug."},
            },
            "required": ["title", "content"],
            "additionalProperties": False,
        },
        run=_propose,
    )
)
