from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from agentops.pagination import paginate
from agentops.teams.access import (
    get_for_team,
    require_editor,
    require_reviewer,
    require_viewer,
    team_queryset,
)

from . import services
from .diffs import change_diff, line_diff, memory_text
from .efficacy import store_efficacy
from .forms import (
    AttachmentEditForm,
    AttachmentForm,
    DreamForm,
    MemoryFilterForm,
    MemoryForm,
    RollbackForm,
    StoreForm,
)
from .models import (
    ACTIVE_DREAM_STATUSES,
    ChangeStatus,
    Dream,
    DreamChange,
    Memory,
    MemoryStatus,
    MemoryStore,
    StoreAttachment,
)
from .retrieval import search_memories


def _errors(error):
    return " ".join(error.messages)


# --- stores -----------------------------------------------------------------------------------


@require_viewer
def store_list(request):
    q = request.GET.get("q", "").strip()
    # distinct: the three joins multiply each other's rows.
    stores = team_queryset(request, MemoryStore).annotate(
        active_count=Count(
            "memories", filter=Q(memories__status=MemoryStatus.ACTIVE), distinct=True
        ),
        proposed_count=Count(
            "memories", filter=Q(memories__status=MemoryStatus.PROPOSED), distinct=True
        ),
        pending_changes=Count(
            "dreams__changes",
            filter=Q(dreams__changes__status=ChangeStatus.PENDING),
            distinct=True,
        ),
        attachment_count=Count("attachments", distinct=True),
    )
    if q:
        stores = stores.filter(Q(name__icontains=q) | Q(description__icontains=q))
    page = paginate(request, stores.order_by("name"))
    template = "memory/stores.html#stores" if request.htmx else "memory/stores.html"
    return render(request, template, {"page": page, "q": q})


@require_editor
def store_create(request):
    form = StoreForm(request.POST or None, team=request.team)
    if request.method == "POST":
        if form.is_valid():
            store = services.memory_store_create(
                team=request.team, actor=request.user, **form.values()
            )
            messages.success(request, f"Created the memory store {store.name}.")
            return redirect("memory:store", pk=store.pk)
        return render(request, "memory/store_form.html", {"form": form}, status=400)
    return render(request, "memory/store_form.html", {"form": form})


@require_editor
def store_edit(request, pk):
    store = get_for_team(request, MemoryStore, pk=pk)
    form = StoreForm(request.POST or None, instance=store, team=request.team)
    if request.method == "POST":
        if form.is_valid():
            services.memory_store_update(store=store, actor=request.user, **form.values())
            messages.success(request, "Store saved.")
            return redirect("memory:store", pk=store.pk)
        store.refresh_from_db()
        return render(request, "memory/store_form.html", {"form": form, "store": store}, status=400)
    return render(request, "memory/store_form.html", {"form": form, "store": store})


def _store_context(request, store, **extra):
    memories = store.memories.select_related("current_version")
    all_tags = sorted({tag for tags in memories.values_list("tags", flat=True) for tag in tags})
    form = MemoryFilterForm(request.GET or None, tags=all_tags)
    if form.is_valid():
        data = form.cleaned_data
        if data["status"]:
            memories = memories.filter(status=data["status"])
        if data["tag"]:
            # Tags are a JSON list; matching in Python works on SQLite and PostgreSQL alike.
            tagged = [pk for pk, tags in memories.values_list("pk", "tags") if data["tag"] in tags]
            memories = memories.filter(pk__in=tagged)
        if data["q"]:
            memories = search_memories(memories, data["q"])
    if not isinstance(memories, list):
        memories = memories.order_by("-updated_at", "-pk")
    states = services.store_states(store)
    context = {
        "store": store,
        "filter_form": form,
        "filtered": bool(
            request.GET.get("q") or request.GET.get("status") or request.GET.get("tag")
        ),
        "page": paginate(request, memories),
        "counts": dict(
            store.memories.values_list("status").annotate(n=Count("pk")).values_list("status", "n")
        ),
        "attachments": store.attachments.select_related("agent"),
        "attachment_form": AttachmentForm(store=store),
        **_dreams_context(store),
        "efficacy": store_efficacy(store),
        "rollback_form": RollbackForm(states=states) if states else None,
        **extra,
    }
    return context


@require_viewer
def store_detail(request, pk):
    store = get_for_team(request, MemoryStore, pk=pk)
    if request.htmx and request.GET.get("part") == "dreams":
        return render(request, "memory/store.html#dreams", _dreams_context(store))
    template = "memory/store.html#memories" if request.htmx else "memory/store.html"
    return render(request, template, _store_context(request, store))


def _dreams_context(store):
    dreams = store.dreams.select_related("created_by").annotate(
        change_count=Count("changes"),
        pending_count=Count("changes", filter=Q(changes__status=ChangeStatus.PENDING)),
    )
    return {
        "store": store,
        "dreams": dreams[:10],
        "active_dream": store.dreams.filter(status__in=ACTIVE_DREAM_STATUSES).first(),
    }


# --- attachments ------------------------------------------------------------------------------


@require_editor
@require_POST
def attachment_add(request, pk):
    store = get_for_team(request, MemoryStore, pk=pk)
    form = AttachmentForm(request.POST, store=store)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.attachment_add(store=store, actor=request.user, **data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Attached {data['agent'].name}.")
            return redirect("memory:store", pk=store.pk)
    context = _store_context(request, store, attachment_form=form)
    return render(request, "memory/store.html", context, status=400)


def _attachment(request, pk):
    return get_object_or_404(
        StoreAttachment.objects.select_related("store", "agent"), pk=pk, store__team=request.team
    )


@require_editor
def attachment_edit(request, pk):
    attachment = _attachment(request, pk)
    form = AttachmentEditForm(request.POST or None, instance=attachment)
    if request.method == "POST":
        if form.is_valid():
            try:
                services.attachment_update(
                    attachment=attachment, actor=request.user, **form.cleaned_data
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, f"Saved the attachment of {attachment.agent.name}.")
                return redirect("memory:store", pk=attachment.store_id)
        attachment.refresh_from_db()
        return render(
            request,
            "memory/attachment_form.html",
            {"form": form, "attachment": attachment},
            status=400,
        )
    return render(request, "memory/attachment_form.html", {"form": form, "attachment": attachment})


@require_editor
@require_POST
def attachment_remove(request, pk):
    attachment = _attachment(request, pk)
    services.attachment_remove(attachment=attachment, actor=request.user)
    messages.success(request, f"Detached {attachment.agent.name}.")
    return redirect("memory:store", pk=attachment.store_id)


# --- memories ---------------------------------------------------------------------------------


@require_editor
def memory_create(request, pk):
    store = get_for_team(request, MemoryStore, pk=pk)
    form = MemoryForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                memory = services.memory_create(
                    store=store, actor=request.user, **form.cleaned_data
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, f"Added “{memory.title}”.")
                return redirect("memory:detail", pk=memory.pk)
        return render(
            request, "memory/memory_form.html", {"form": form, "store": store}, status=400
        )
    return render(request, "memory/memory_form.html", {"form": form, "store": store})


def _provenance_links(provenance):
    provenance = provenance or {}
    return {
        "runs": provenance.get("run_ids") or [],
        "steps": provenance.get("step_ids") or [],
        "evaluations": provenance.get("evaluation_ids") or [],
    }


@require_viewer
def memory_detail(request, pk):
    memory = get_for_team(request, Memory.objects.select_related("store", "superseded_by"), pk=pk)
    versions = list(memory.versions.select_related("actor", "dream_change__dream"))
    history = []
    for index, version in enumerate(versions):
        previous = versions[index + 1] if index + 1 < len(versions) else None
        before = memory_text(previous.title, previous.content, previous.tags) if previous else ""
        history.append(
            {
                "version": version,
                "diff": line_diff(
                    before, memory_text(version.title, version.content, version.tags)
                ),
                "status_changed": previous is not None and previous.status != version.status,
                "previous": previous,
            }
        )
    context = {
        "memory": memory,
        "history": history,
        "provenance": _provenance_links(memory.provenance),
        "supersedes": memory.supersedes.all(),
        "changes": memory.dream_changes.select_related("dream"),
    }
    return render(request, "memory/memory.html", context)


@require_editor
def memory_edit(request, pk):
    memory = get_for_team(request, Memory.objects.select_related("store"), pk=pk)
    initial = {"title": memory.title, "content": memory.content, "tags": ", ".join(memory.tags)}
    form = MemoryForm(request.POST or None, initial=initial)
    if request.method == "POST":
        if form.is_valid():
            try:
                services.memory_edit(memory=memory, actor=request.user, **form.cleaned_data)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, "Saved a new version.")
                return redirect("memory:detail", pk=memory.pk)
        context = {"form": form, "store": memory.store, "memory": memory}
        return render(request, "memory/memory_form.html", context, status=400)
    context = {"form": form, "store": memory.store, "memory": memory}
    return render(request, "memory/memory_form.html", context)


@require_editor
@require_POST
def memory_retire(request, pk):
    memory = get_for_team(request, Memory, pk=pk)
    action = services.memory_restore if request.POST.get("restore") else services.memory_retire
    try:
        action(memory=memory, actor=request.user, note=request.POST.get("note", "").strip())
    except ValidationError as error:
        messages.error(request, _errors(error))
    else:
        messages.success(request, "Restored." if request.POST.get("restore") else "Retired.")
    return redirect("memory:detail", pk=memory.pk)


@require_reviewer
@require_POST
def memory_decide(request, pk):
    """Approve or reject a memory an agent proposed."""
    memory = get_for_team(request, Memory, pk=pk)
    approve = request.POST.get("decision") == "approve"
    action = services.memory_approve if approve else services.memory_reject
    try:
        action(memory=memory, actor=request.user, note=request.POST.get("note", "").strip())
    except ValidationError as error:
        messages.error(request, _errors(error))
    else:
        messages.success(request, "Approved: runs use it from now on." if approve else "Rejected.")
    return redirect("memory:detail", pk=memory.pk)


@require_editor
@require_POST
def store_rollback(request, pk):
    store = get_for_team(request, MemoryStore, pk=pk)
    form = RollbackForm(request.POST, states=services.store_states(store))
    if not form.is_valid():
        messages.error(request, "Choose one of the listed earlier states.")
        return redirect("memory:store", pk=store.pk)
    try:
        changed = services.memory_store_rollback(
            store=store, actor=request.user, to_version_id=form.cleaned_data["to_version"]
        )
    except ValidationError as error:
        messages.error(request, _errors(error))
    else:
        messages.success(
            request,
            f"Rolled back: {len(changed)} memor{'y' if len(changed) == 1 else 'ies'} changed."
            if changed
            else "Nothing to change: the store is already in that state.",
        )
    return redirect("memory:store", pk=store.pk)


# --- dreams -----------------------------------------------------------------------------------


@require_editor
def dream_start(request, pk):
    store = get_for_team(request, MemoryStore, pk=pk)
    form = DreamForm(request.POST or None, store=store)
    if request.method == "POST":
        if form.is_valid():
            try:
                dream = services.dream_start(store=store, actor=request.user, **form.cleaned_data)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, f"Started {dream.label}; it reads the sessions now.")
                return redirect("memory:dream", pk=dream.pk)
        return render(request, "memory/dream_form.html", {"form": form, "store": store}, status=400)
    return render(request, "memory/dream_form.html", {"form": form, "store": store})


@require_viewer
def dream_detail(request, pk):
    dream = get_for_team(request, Dream.objects.select_related("store", "created_by"), pk=pk)
    status = request.GET.get("status", "")
    changes = dream.changes.select_related("decided_by", "result_memory").prefetch_related(
        "targets"
    )
    if status in ChangeStatus.values:
        changes = changes.filter(status=status)
    rows = [{"change": change, "diff": change_diff(change)} for change in changes]
    context = {
        "dream": dream,
        "rows": rows,
        "status": status,
        "status_choices": ChangeStatus.choices,
        "pending_count": dream.changes.filter(status=ChangeStatus.PENDING).count(),
        "agents": dream.agents.all(),
    }
    if request.htmx and request.GET.get("part") == "progress":
        response = render(request, "memory/dream.html#progress", context)
        if not dream.is_active:
            response["HX-Refresh"] = "true"  # the changeset appears with the whole page
        return response
    return render(request, "memory/dream.html", context)


@require_reviewer
@require_POST
def change_decide(request, pk, change_pk):
    dream = get_for_team(request, Dream, pk=pk)
    change = get_object_or_404(DreamChange, pk=change_pk, dream=dream)
    approve = request.POST.get("decision") == "approve"
    action = services.dream_change_approve if approve else services.dream_change_reject
    try:
        action(change=change, actor=request.user)
    except ValidationError as error:
        messages.error(request, _errors(error))
    else:
        messages.success(
            request, f"{'Approved' if approve else 'Rejected'}: {change.display_title}."
        )
    return redirect(reverse("memory:dream", args=[dream.pk]) + f"#change-{change.pk}")


@require_reviewer
@require_POST
def dream_decide_all(request, pk):
    dream = get_for_team(request, Dream, pk=pk)
    approve = request.POST.get("decision") == "approve"
    decided, problems = services.dream_changes_decide_all(
        dream=dream, actor=request.user, approve=approve
    )
    if decided:
        verb = "Approved" if approve else "Rejected"
        messages.success(
            request, f"{verb} {len(decided)} change{'s' if len(decided) != 1 else ''}."
        )
    for change, problem in problems:
        messages.error(request, f"“{change.display_title}”: {problem}")
    if not decided and not problems:
        messages.info(request, "No change was waiting for a decision.")
    return redirect("memory:dream", pk=dream.pk)
