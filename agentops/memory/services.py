"""Changes to memory stores, memories and dreams. Every change adds an immutable
MemoryVersion where a memory changes, and an audit row.

The dreamer itself (reading sessions, calling the model) lives in `dreaming.py`.
"""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentops.llm.catalogue import DEFAULT_MODEL
from agentops.teams.services import audit_record, unique_slug

from . import retrieval
from .models import (
    ACTIVE_DREAM_STATUSES,
    ChangeOperation,
    ChangeStatus,
    Dream,
    DreamChange,
    DreamTrigger,
    Memory,
    MemoryStatus,
    MemoryStore,
    MemoryVersion,
    StoreAttachment,
    VersionOperation,
    merge_provenance,
)

# --- stores and attachments -------------------------------------------------------------------

STORE_FIELDS = (
    "name",
    "description",
    "instructions",
    "auto_apply",
    "dream_every_hours",
    "dream_model",
)


def _store_values(store):
    return {name: getattr(store, name) for name in STORE_FIELDS}


@transaction.atomic
def memory_store_create(
    *,
    team,
    actor,
    name,
    description="",
    instructions="",
    auto_apply=False,
    dream_every_hours=None,
    dream_model=DEFAULT_MODEL,
):
    store = MemoryStore.objects.create(
        team=team,
        name=name,
        slug=unique_slug(MemoryStore, team, name, fallback="store"),
        description=description,
        instructions=instructions,
        auto_apply=auto_apply,
        dream_every_hours=dream_every_hours,
        dream_model=dream_model,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(
        team=team, actor=actor, verb="memory_store.create", obj=store, after=_store_values(store)
    )
    return store


@transaction.atomic
def memory_store_update(*, store, actor, **values):
    unknown = set(values) - set(STORE_FIELDS)
    if unknown:
        raise TypeError(f"unknown store fields: {', '.join(sorted(unknown))}")
    before = _store_values(store)
    for name, value in values.items():
        setattr(store, name, value)
    store.save()
    audit_record(
        team=store.team,
        actor=actor,
        verb="memory_store.update",
        obj=store,
        before=before,
        after=_store_values(store),
    )
    return store


def _check_attachment(store, agent, token_budget, holdout_share):
    if agent.team_id != store.team_id:
        raise ValidationError("That agent belongs to another team.")
    if token_budget is None or token_budget < 1:
        raise ValidationError({"token_budget": "The token budget must be at least 1."})
    if holdout_share is None or not 0 <= holdout_share <= 0.9:
        raise ValidationError({"holdout_share": "The holdout share must be between 0 and 0.9."})


def _attachment_values(attachment):
    return {
        "agent": attachment.agent.slug,
        "mode": attachment.mode,
        "token_budget": attachment.token_budget,
        "holdout_share": attachment.holdout_share,
    }


@transaction.atomic
def attachment_add(*, store, actor, agent, mode, token_budget=800, holdout_share=0.0):
    _check_attachment(store, agent, token_budget, holdout_share)
    if StoreAttachment.objects.filter(store=store, agent=agent).exists():
        raise ValidationError(f"{agent.name} is already attached to {store.name}.")
    attachment = StoreAttachment.objects.create(
        store=store, agent=agent, mode=mode, token_budget=token_budget, holdout_share=holdout_share
    )
    audit_record(
        team=store.team,
        actor=actor,
        verb="memory_store.attach",
        obj=attachment,
        after=_attachment_values(attachment),
    )
    return attachment


@transaction.atomic
def attachment_update(*, attachment, actor, mode, token_budget, holdout_share):
    _check_attachment(attachment.store, attachment.agent, token_budget, holdout_share)
    before = _attachment_values(attachment)
    attachment.mode = mode
    attachment.token_budget = token_budget
    attachment.holdout_share = holdout_share
    attachment.save()
    audit_record(
        team=attachment.store.team,
        actor=actor,
        verb="memory_store.attachment_update",
        obj=attachment,
        before=before,
        after=_attachment_values(attachment),
    )
    return attachment


@transaction.atomic
def attachment_remove(*, attachment, actor):
    audit_record(
        team=attachment.store.team,
        actor=actor,
        verb="memory_store.detach",
        obj=attachment,
        before=_attachment_values(attachment),
    )
    attachment.delete()


# --- memories ---------------------------------------------------------------------------------


def clean_tags(tags):
    """Tags as a sorted list of distinct, trimmed, lower-case words."""
    if isinstance(tags, str):
        tags = tags.split(",")
    cleaned = {str(tag).strip().lower()[:40] for tag in tags or [] if str(tag).strip()}
    return sorted(cleaned)


def _actor_user(actor):
    return actor if getattr(actor, "is_authenticated", False) else None


def _add_version(
    memory,
    *,
    operation,
    actor=None,
    actor_label="",
    provenance=None,
    note="",
    dream_change=None,
):
    """Record the memory's current fields as its next version (the memory is saved)."""
    last = memory.versions.order_by("-number").values_list("number", flat=True).first() or 0
    version = MemoryVersion.objects.create(
        memory=memory,
        number=last + 1,
        title=memory.title,
        content=memory.content,
        tags=list(memory.tags or []),
        status=memory.status,
        operation=operation,
        actor=_actor_user(actor),
        actor_label=actor_label,
        provenance=provenance if provenance is not None else dict(memory.provenance or {}),
        note=note,
        dream_change=dream_change,
    )
    memory.current_version = version
    memory.save()
    return version


def _check_text(title, content):
    errors = {}
    if not (title or "").strip():
        errors["title"] = "Give the memory a title."
    if not (content or "").strip():
        errors["content"] = "Write the memory's content."
    if errors:
        raise ValidationError(errors)


def _audit_memory(memory, *, actor, actor_label, verb, before=None):
    audit_record(
        team=memory.team,
        actor=actor,
        actor_label="" if _actor_user(actor) else actor_label,
        verb=verb,
        obj=memory,
        before=before,
        after=memory.state(),
    )


def _create(
    *,
    store,
    actor,
    title,
    content,
    tags=(),
    status=MemoryStatus.ACTIVE,
    provenance=None,
    actor_label="",
    note="",
    dream_change=None,
):
    _check_text(title, content)
    memory = Memory.objects.create(
        team=store.team,
        store=store,
        title=title.strip()[:200],
        content=content.strip(),
        tags=clean_tags(tags),
        status=status,
        provenance=merge_provenance(provenance),
    )
    _add_version(
        memory,
        operation=VersionOperation.CREATE,
        actor=actor,
        actor_label=actor_label,
        note=note,
        dream_change=dream_change,
    )
    _audit_memory(memory, actor=actor, actor_label=actor_label, verb="memory.create")
    return memory


@transaction.atomic
def memory_create(
    *, store, actor, title, content, tags=(), status=MemoryStatus.ACTIVE, provenance=None, note=""
):
    """A memory written by a member (active at once) or proposed for review."""
    return _create(
        store=store,
        actor=actor,
        title=title,
        content=content,
        tags=tags,
        status=status,
        provenance=provenance,
        note=note,
    )


@transaction.atomic
def memory_propose(*, store, title, content, tags=(), provenance=None, actor_label, note=""):
    """A memory an agent run proposes: it waits for a reviewer, never live by itself."""
    return _create(
        store=store,
        actor=None,
        title=title,
        content=content,
        tags=tags,
        status=MemoryStatus.PROPOSED,
        provenance=provenance,
        actor_label=actor_label,
        note=note,
    )


def _lock(memory):
    return Memory.objects.select_for_update().select_related("team", "store").get(pk=memory.pk)


@transaction.atomic
def memory_edit(*, memory, actor, title, content, tags, note=""):
    memory = _lock(memory)
    if memory.status in (MemoryStatus.SUPERSEDED, MemoryStatus.REJECTED):
        raise ValidationError(
            f"A {memory.get_status_display().lower()} memory is kept as history and cannot be "
            "edited."
        )
    _check_text(title, content)
    before = memory.state()
    memory.title = title.strip()[:200]
    memory.content = content.strip()
    memory.tags = clean_tags(tags)
    if memory.state() == before:
        raise ValidationError("Nothing changed.")
    _add_version(memory, operation=VersionOperation.EDIT, actor=actor, note=note)
    _audit_memory(memory, actor=actor, actor_label="", verb="memory.edit", before=before)
    return memory


def _set_status(memory, *, status, operation, actor, actor_label="", note="", verb, allowed, done):
    memory = _lock(memory)
    if memory.status not in allowed:
        raise ValidationError(
            f"This memory is {memory.get_status_display().lower()}; it cannot be {done}."
        )
    before = memory.state()
    memory.status = status
    _add_version(memory, operation=operation, actor=actor, actor_label=actor_label, note=note)
    _audit_memory(memory, actor=actor, actor_label=actor_label, verb=verb, before=before)
    return memory


@transaction.atomic
def memory_retire(*, memory, actor, note=""):
    return _set_status(
        memory,
        status=MemoryStatus.RETIRED,
        operation=VersionOperation.RETIRE,
        actor=actor,
        note=note,
        verb="memory.retire",
        allowed=(MemoryStatus.ACTIVE,),
        done="retired",
    )


@transaction.atomic
def memory_restore(*, memory, actor, note=""):
    """Bring a retired memory back into use."""
    return _set_status(
        memory,
        status=MemoryStatus.ACTIVE,
        operation=VersionOperation.RESTORE,
        actor=actor,
        note=note or "Restored from retirement.",
        verb="memory.restore",
        allowed=(MemoryStatus.RETIRED,),
        done="restored",
    )


@transaction.atomic
def memory_approve(*, memory, actor, note=""):
    """A reviewer accepts a proposed memory: from now on runs are given it."""
    return _set_status(
        memory,
        status=MemoryStatus.ACTIVE,
        operation=VersionOperation.APPROVE,
        actor=actor,
        note=note,
        verb="memory.approve",
        allowed=(MemoryStatus.PROPOSED,),
        done="approved",
    )


@transaction.atomic
def memory_reject(*, memory, actor, note=""):
    return _set_status(
        memory,
        status=MemoryStatus.REJECTED,
        operation=VersionOperation.REJECT,
        actor=actor,
        note=note,
        verb="memory.reject",
        allowed=(MemoryStatus.PROPOSED,),
        done="rejected",
    )


# --- rollback ---------------------------------------------------------------------------------


def store_versions(store):
    return MemoryVersion.objects.filter(memory__store=store).order_by("pk")


def store_states(store, *, limit=30):
    """Earlier states of a store a rollback can return to, newest first: each is the state
    right after one version was recorded, with the number of memories active then. The
    current state is not listed."""
    versions = list(store_versions(store).select_related("memory", "actor"))
    status_of, states = {}, []
    for version in versions:
        status_of[version.memory_id] = version.status
        active = sum(1 for status in status_of.values() if status == MemoryStatus.ACTIVE)
        states.append((version, active))
    return list(reversed(states[:-1]))[:limit]


@transaction.atomic
def memory_store_rollback(*, store, actor, to_version_id=None, to_time=None):
    """Return the store to its state right after version `to_version_id` (or at `to_time`):
    each memory takes back the title, content, tags and status it had then, through a new
    "rollback" version; a memory that did not exist yet and is active now is retired. History
    is never deleted, so a rollback can itself be rolled back. Returns the memories changed.
    """
    if (to_version_id is None) == (to_time is None):
        raise ValueError("give exactly one of to_version_id and to_time")
    if to_time is not None:
        last = (
            store_versions(store).filter(created_at__lte=to_time).values_list("pk", flat=True)
        ).last()
        to_version_id = last or 0
    elif to_version_id and not store_versions(store).filter(pk=to_version_id).exists():
        raise ValidationError("That state does not belong to this store.")
    label = f"the state after change #{to_version_id}" if to_version_id else "its empty state"
    changed = []
    memories = list(store.memories.select_for_update().order_by("pk"))
    past_of = {}  # each memory's last version at that point; later numbers overwrite
    for version in store_versions(store).filter(pk__lte=to_version_id).order_by("number"):
        past_of[version.memory_id] = version
    for memory in memories:
        past = past_of.get(memory.pk)
        if past is None:
            if memory.status != MemoryStatus.ACTIVE:
                continue  # not in the active set then or now; a pending proposal stays
            target = {**memory.state(), "status": MemoryStatus.RETIRED}
        else:
            target = past.state()
        if target == memory.state():
            continue
        before = memory.state()
        memory.title = target["title"]
        memory.content = target["content"]
        memory.tags = target["tags"]
        memory.status = target["status"]
        _add_version(
            memory,
            operation=VersionOperation.ROLLBACK,
            actor=actor,
            note=f"Store rolled back to {label}.",
        )
        changed.append({"memory": memory.pk, "before": before["status"], "after": memory.status})
    audit_record(
        team=store.team,
        actor=actor,
        verb="memory_store.rollback",
        obj=store,
        after={"to_version": to_version_id, "changed": changed},
    )
    return changed


# --- dreams: starting and reviewing -----------------------------------------------------------


class DreamAlreadyActive(ValidationError):
    """A store has at most one queued or running dream."""


def _already_active_message(store):
    active = Dream.objects.filter(store=store, status__in=ACTIVE_DREAM_STATUSES).first()
    which = f" ({active.label}, {active.get_status_display().lower()})" if active else ""
    return (
        f"A dream is already in progress on {store.name}{which}. Wait for it to finish, "
        "then start another."
    )


def dream_start(
    *,
    store,
    actor,
    model=None,
    agents=(),
    since=None,
    until=None,
    verdict="",
    instructions="",
    trigger=DreamTrigger.BROWSER,
    enqueue=True,
):
    """Queue a dream over `store`. Refused (DreamAlreadyActive) while another is queued or
    running on the same store; the database enforces it too."""
    if since and until and since > until:
        raise ValidationError({"until": "The end date is before the start date."})
    agents = list(agents)
    if any(agent.team_id != store.team_id for agent in agents):
        raise ValidationError("Those agents belong to another team.")
    if Dream.objects.filter(store=store, status__in=ACTIVE_DREAM_STATUSES).exists():
        raise DreamAlreadyActive(_already_active_message(store))
    try:
        with transaction.atomic():
            dream = Dream.objects.create(
                team=store.team,
                store=store,
                trigger=trigger,
                since=since,
                until=until,
                verdict=verdict or "",
                instructions=instructions or "",
                model=model or store.dream_model,
                created_by=_actor_user(actor),
            )
            dream.agents.set(agents)
            audit_record(
                team=store.team,
                actor=actor,
                actor_label="" if _actor_user(actor) else trigger,
                verb="dream.start",
                obj=dream,
                after={
                    "store": store.slug,
                    "model": dream.model,
                    "agents": [agent.slug for agent in agents],
                    "since": str(since or ""),
                    "until": str(until or ""),
                    "verdict": verdict or "",
                },
            )
            if enqueue:
                from .tasks import dream_execute_task

                dream_execute_task.delay_on_commit(dream.pk)
    except IntegrityError as error:
        # Another request started one between our check and our insert.
        raise DreamAlreadyActive(_already_active_message(store)) from error
    return dream


def _lock_change(change):
    return (
        DreamChange.objects.select_for_update()
        .select_related("dream", "dream__store", "dream__team")
        .get(pk=change.pk)
    )


def _check_targets(change, targets):
    if change.operation != ChangeOperation.ADD and not targets:
        raise ValidationError("This change names no memory to change.")
    versions = {entry.get("id"): entry.get("version") for entry in change.before or []}
    for memory in targets:
        if memory.store_id != change.dream.store_id:
            raise ValidationError(f"“{memory.title}” is in another store.")
        if memory.status != MemoryStatus.ACTIVE:
            raise ValidationError(
                f"“{memory.title}” is {memory.get_status_display().lower()} now; this change "
                "no longer applies. Reject it."
            )
        proposed_on = versions.get(memory.pk)
        current = memory.current_version.number if memory.current_version_id else None
        if proposed_on is not None and current != proposed_on:
            raise ValidationError(
                f"“{memory.title}” changed since the dream proposed this (v{proposed_on} → "
                f"v{current}). Reject this change, or run a new dream."
            )


def _updated_values(memory, title, content, tags):
    """The title, content and tags an update or merge gives `memory` (blank keeps its own)."""
    return (
        (title or memory.title)[:200],
        content or memory.content,
        clean_tags(tags) if tags else memory.tags,
    )


def memory_unchanged_by(memory, title, content, tags):
    """Whether an update with this title, content and tags would leave `memory` as it is."""
    new_title, new_content, new_tags = _updated_values(memory, title, content, tags)
    return (
        new_title == memory.title
        and new_content.strip() == memory.content.strip()
        and set(new_tags or []) == set(memory.tags or [])
    )


def _check_not_already_there(change, store):
    """An addition is refused once the store holds a memory that nearly says it (one added
    meanwhile, by hand or by another dream's change)."""
    active = Memory.objects.filter(store=store, status=MemoryStatus.ACTIVE)
    duplicate, score = retrieval.nearest_duplicate(change.title, change.content, active)
    if duplicate is not None:
        raise ValidationError(
            f"The store already has “{duplicate.title}”, which says nearly the same "
            f"(similarity {score:.2f}); this change no longer applies. Reject it."
        )


def _apply(change, *, actor, actor_label):
    """Carry out an approved change on locked rows. Returns the memory it produced or
    kept."""
    store = change.dream.store
    targets = list(
        change.targets.select_for_update(of=("self",))
        .select_related("current_version")
        .order_by("pk")
    )
    order = [entry.get("id") for entry in change.before or []]
    targets.sort(key=lambda m: order.index(m.pk) if m.pk in order else len(order))
    _check_targets(change, targets)
    note = change.rationale
    provenance = change.provenance()
    common = {"actor": actor, "actor_label": actor_label, "note": note, "dream_change": change}
    operation = change.operation
    if operation == ChangeOperation.ADD:
        _check_not_already_there(change, store)
        return _create(
            store=store,
            title=change.title,
            content=change.content,
            tags=change.tags,
            provenance=provenance,
            **common,
        )
    if operation == ChangeOperation.RETIRE:
        for memory in targets:
            before = memory.state()
            memory.status = MemoryStatus.RETIRED
            _add_version(memory, operation=VersionOperation.RETIRE, **common)
            _audit_memory(
                memory, actor=actor, actor_label=actor_label, verb="memory.retire", before=before
            )
        return targets[0]
    if operation in (ChangeOperation.UPDATE, ChangeOperation.MERGE):
        survivor, others = targets[0], targets[1:]
        if not others and memory_unchanged_by(survivor, change.title, change.content, change.tags):
            raise ValidationError(
                f"This change would leave “{survivor.title}” as it is. Reject it."
            )
        title, content, tags = _updated_values(survivor, change.title, change.content, change.tags)
        _check_text(title, content)
        before = survivor.state()
        survivor.title, survivor.content, survivor.tags = title, content, tags
        survivor.provenance = merge_provenance(
            survivor.provenance, provenance, *(m.provenance for m in others)
        )
        version_op = (
            VersionOperation.EDIT if operation == ChangeOperation.UPDATE else VersionOperation.MERGE
        )
        _add_version(survivor, operation=version_op, provenance=survivor.provenance, **common)
        _audit_memory(
            survivor,
            actor=actor,
            actor_label=actor_label,
            verb=f"memory.{version_op}",
            before=before,
        )
        for memory in others:
            _supersede(memory, by=survivor, operation=VersionOperation.MERGE, common=common)
        return survivor
    if operation == ChangeOperation.SUPERSEDE:
        replacement = _create(
            store=store,
            title=change.title,
            content=change.content,
            tags=change.tags,
            provenance=merge_provenance(provenance, *(m.provenance for m in targets)),
            **common,
        )
        for memory in targets:
            _supersede(memory, by=replacement, operation=VersionOperation.SUPERSEDE, common=common)
        return replacement
    raise ValidationError(f"Unknown operation {operation!r}.")


def _supersede(memory, *, by, operation, common):
    before = memory.state()
    memory.status = MemoryStatus.SUPERSEDED
    memory.superseded_by = by
    _add_version(memory, operation=operation, **common)
    _audit_memory(
        memory,
        actor=common["actor"],
        actor_label=common["actor_label"],
        verb="memory.supersede",
        before=before,
    )


def _decide(change, *, actor, approve, auto=False):
    change = _lock_change(change)
    if not change.is_pending:
        raise ValidationError(f"This change was already {change.get_status_display().lower()}.")
    label = change.dream.label + (" (auto-apply)" if auto else "")
    if approve:
        change.result_memory = _apply(change, actor=actor, actor_label=label)
    change.status = ChangeStatus.APPROVED if approve else ChangeStatus.REJECTED
    change.decided_by = _actor_user(actor)
    change.decided_at = timezone.now()
    change.save()
    audit_record(
        team=change.dream.team,
        actor=actor,
        actor_label="" if _actor_user(actor) else label,
        verb="dream_change.approve" if approve else "dream_change.reject",
        obj=change,
        after={
            "operation": change.operation,
            "title": change.title,
            "targets": [entry.get("id") for entry in change.before or []],
            "result_memory": change.result_memory_id,
        },
    )
    return change


@transaction.atomic
def dream_change_approve(*, change, actor):
    """Apply one proposed change to the store."""
    return _decide(change, actor=actor, approve=True)


@transaction.atomic
def dream_change_reject(*, change, actor):
    return _decide(change, actor=actor, approve=False)


def dream_changes_decide_all(*, dream, actor, approve, auto=False):
    """Approve or reject every pending change of a dream, each in its own transaction so one
    that no longer applies does not hold back the rest. Returns (decided, problems)."""
    decided, problems = [], []
    for change in dream.changes.filter(status=ChangeStatus.PENDING).order_by("position", "pk"):
        try:
            with transaction.atomic():
                decided.append(_decide(change, actor=actor, approve=approve, auto=auto))
        except ValidationError as error:
            problems.append((change, " ".join(error.messages)))
    return decided, problems


# --- efficacy -------------------------------------------------------------------------------


@transaction.atomic
def memory_use_link_evaluation(*, run, evaluation):
    """Record that `evaluation` graded `run`'s output (its graded thread's, when it has one),
    so the stores that thread was given (or held out from) count it in their efficacy
    figures. The outcome loop calls this when it grades. Returns how many uses were linked."""
    from .models import MemoryUse

    if evaluation.team_id != run.team_id:
        raise ValidationError("The evaluation belongs to another team.")
    uses = MemoryUse.objects.filter(run=run)
    if evaluation.thread_id is not None:  # each graded thread (lead or specialist) its own
        uses = uses.filter(thread_id=evaluation.thread_id)
    return uses.update(evaluation=evaluation)
