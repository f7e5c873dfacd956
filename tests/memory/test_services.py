import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agentops.memory import services
from agentops.memory.models import (
    ChangeOperation,
    ChangeStatus,
    Dream,
    DreamChange,
    DreamStatus,
    Memory,
    MemoryStatus,
    MemoryVersion,
    StoreAttachment,
    VersionOperation,
)
from agentops.teams.models import AuditEvent


def test_store_create_gives_a_unique_slug_and_is_audited(team_a, alice):
    first = services.memory_store_create(team=team_a, actor=alice, name="Ops notes")
    second = services.memory_store_create(team=team_a, actor=alice, name="Ops notes")
    assert (first.slug, second.slug) == ("ops-notes", "ops-notes-2")
    assert AuditEvent.objects.filter(verb="memory_store.create").count() == 2


def test_every_change_adds_an_immutable_version_with_its_actor(store, alice, bob):
    memory = services.memory_create(
        store=store, actor=alice, title="Refunds", content="30 days.", tags=["Policy", " policy"]
    )
    assert memory.tags == ["policy"]
    services.memory_edit(
        memory=memory, actor=bob, title="Refund window", content="30 days.", tags="policy, refund"
    )
    services.memory_retire(memory=memory, actor=alice, note="Policy changed")
    versions = list(memory.versions.order_by("number"))
    assert [(v.number, v.operation, v.status, v.actor) for v in versions] == [
        (1, VersionOperation.CREATE, MemoryStatus.ACTIVE, alice),
        (2, VersionOperation.EDIT, MemoryStatus.ACTIVE, bob),
        (3, VersionOperation.RETIRE, MemoryStatus.RETIRED, alice),
    ]
    assert versions[0].title == "Refunds" and versions[1].tags == ["policy", "refund"]
    memory.refresh_from_db()
    assert memory.current_version == versions[2]
    assert list(
        AuditEvent.objects.filter(object_type="memory.Memory")
        .order_by("id")
        .values_list("verb", flat=True)
    ) == ["memory.create", "memory.edit", "memory.retire"]


def test_edit_without_a_change_and_of_history_is_refused(store, alice, make_memory):
    memory = make_memory("Refunds", "30 days.")
    with pytest.raises(ValidationError, match="Nothing changed"):
        services.memory_edit(
            memory=memory, actor=alice, title="Refunds", content="30 days.", tags=[]
        )
    services.memory_retire(memory=memory, actor=alice)
    with pytest.raises(ValidationError, match="cannot be retired"):
        services.memory_retire(memory=memory, actor=alice)
    with pytest.raises(ValidationError, match="title"):
        services.memory_create(store=store, actor=alice, title=" ", content="x")


def test_a_restore_is_recorded_as_a_restore(store, alice, make_memory):
    memory = make_memory("Refunds", "30 days.")
    services.memory_retire(memory=memory, actor=alice)
    services.memory_restore(memory=memory, actor=alice)
    memory.refresh_from_db()
    assert memory.status == MemoryStatus.ACTIVE
    latest = memory.versions.order_by("-number").first()
    assert latest.get_operation_display() == "Restore"
    assert latest.note == "Restored from retirement."
    with pytest.raises(ValidationError):
        services.memory_restore(memory=memory, actor=alice)  # it is not retired any more


def test_agent_proposal_waits_for_review(store, alice):
    memory = services.memory_propose(
        store=store,
        title="Ask for the order number",
        content="Always ask for it first.",
        provenance={"run_ids": [7], "step_ids": [70]},
        actor_label="run #7",
    )
    assert memory.status == MemoryStatus.PROPOSED
    version = memory.current_version
    assert (version.actor, version.actor_label, version.actor_name) == (None, "run #7", "run #7")
    assert memory.provenance == {"run_ids": [7], "step_ids": [70], "evaluation_ids": []}
    services.memory_approve(memory=memory, actor=alice)
    memory.refresh_from_db()
    assert memory.status == MemoryStatus.ACTIVE
    assert memory.current_version.operation == VersionOperation.APPROVE
    with pytest.raises(ValidationError, match="cannot be rejected"):
        services.memory_reject(memory=memory, actor=alice)


def test_attachment_rules(store, support_agent, alice, team_b, charlie):
    from agentops.agents.services import agent_create

    with pytest.raises(ValidationError, match="token budget"):
        services.attachment_add(
            store=store, actor=alice, agent=support_agent, mode="read_only", token_budget=0
        )
    with pytest.raises(ValidationError, match="holdout share"):
        services.attachment_add(
            store=store, actor=alice, agent=support_agent, mode="read_only", holdout_share=0.95
        )
    other = agent_create(
        team=team_b, actor=charlie, name="B bot", model="m", system_prompt="x", max_tokens=10
    )
    with pytest.raises(ValidationError, match="another team"):
        services.attachment_add(store=store, actor=alice, agent=other, mode="read_only")
    services.attachment_add(store=store, actor=alice, agent=support_agent, mode="read_only")
    with pytest.raises(ValidationError, match="already attached"):
        services.attachment_add(store=store, actor=alice, agent=support_agent, mode="read_only")


def test_database_guards_attachment_ranges(store, support_agent):
    with pytest.raises(IntegrityError), transaction.atomic():
        StoreAttachment.objects.create(store=store, agent=support_agent, holdout_share=0.95)
    with pytest.raises(IntegrityError), transaction.atomic():
        StoreAttachment.objects.create(store=store, agent=support_agent, token_budget=0)


def _active_set(store):
    return set(store.memories.filter(status=MemoryStatus.ACTIVE).values_list("title", "content"))


def test_rollback_restores_the_earlier_active_set(store, alice, make_memory):
    keep = make_memory("Refund window", "30 days.")
    edited = make_memory("Tone", "Be brief.")
    earlier = _active_set(store)
    checkpoint = MemoryVersion.objects.filter(memory__store=store).order_by("pk").last()

    services.memory_edit(memory=edited, actor=alice, title="Tone", content="Be chatty.", tags=[])
    services.memory_retire(memory=keep, actor=alice)
    added = make_memory("Shipping", "Ships in 2 days.")
    pending = make_memory("Idea", "Unreviewed.", status=MemoryStatus.PROPOSED)
    assert _active_set(store) != earlier

    changed = services.memory_store_rollback(store=store, actor=alice, to_version_id=checkpoint.pk)
    assert _active_set(store) == earlier
    assert len(changed) == 3
    added.refresh_from_db()
    pending.refresh_from_db()
    assert added.status == MemoryStatus.RETIRED
    assert pending.status == MemoryStatus.PROPOSED  # still waits for its review
    # History is kept: the rollback added versions, and can itself be rolled back.
    assert edited.versions.count() == 3
    assert edited.versions.first().operation == VersionOperation.ROLLBACK
    assert AuditEvent.objects.filter(verb="memory_store.rollback").exists()


def test_rollback_to_a_time_and_to_the_empty_state(store, alice, make_memory):
    from django.utils import timezone

    make_memory("A", "first")
    moment = timezone.now()
    make_memory("B", "second")
    services.memory_store_rollback(store=store, actor=alice, to_time=moment)
    assert _active_set(store) == {("A", "first")}
    services.memory_store_rollback(store=store, actor=alice, to_version_id=0)
    assert _active_set(store) == set()


def test_rollback_refuses_another_stores_state(store, team_a, alice, make_memory):
    other = services.memory_store_create(team=team_a, actor=alice, name="Other")
    foreign = make_memory("X", "y", target_store=other)
    with pytest.raises(ValidationError, match="does not belong"):
        services.memory_store_rollback(
            store=store, actor=alice, to_version_id=foreign.current_version_id
        )


def test_store_states_lists_earlier_states_with_active_counts(store, alice, make_memory):
    first = make_memory("A", "first")
    make_memory("B", "second")
    services.memory_retire(memory=first, actor=alice)
    states = services.store_states(store)
    assert [count for _, count in states] == [2, 1]


def test_second_dream_on_a_store_is_refused(store, alice):
    first = services.dream_start(store=store, actor=alice, enqueue=False)
    with pytest.raises(services.DreamAlreadyActive, match="already in progress"):
        services.dream_start(store=store, actor=alice, enqueue=False)
    assert Dream.objects.filter(store=store).count() == 1
    # The database refuses it too, whatever the caller checked.
    with pytest.raises(IntegrityError), transaction.atomic():
        Dream.objects.create(team=store.team, store=store, model="m", status=DreamStatus.RUNNING)
    Dream.objects.filter(pk=first.pk).update(status=DreamStatus.SUCCEEDED)
    services.dream_start(store=store, actor=alice, enqueue=False)


def test_dream_dates_are_checked(store, alice):
    import datetime

    with pytest.raises(ValidationError, match="before the start"):
        services.dream_start(
            store=store,
            actor=alice,
            since=datetime.date(2026, 5, 2),
            until=datetime.date(2026, 5, 1),
            enqueue=False,
        )


def _dream_with(store, *changes):
    dream = Dream.objects.create(
        team=store.team, store=store, model="m", status=DreamStatus.SUCCEEDED
    )
    made = []
    for position, (operation, targets, fields) in enumerate(changes):
        change = DreamChange.objects.create(
            dream=dream,
            position=position,
            operation=operation,
            before=[
                {"id": m.pk, "title": m.title, "version": m.current_version.number} for m in targets
            ],
            evidence=[{"run_id": 11, "quote": "q"}, {"run_id": 12, "evaluation_id": 5}],
            rationale="because",
            **fields,
        )
        change.targets.set(targets)
        made.append(change)
    return dream, made


def test_approving_each_operation(store, alice, bob, make_memory):
    old = make_memory("Old tone", "Be formal.")
    dup_a = make_memory("Refunds", "30 days.")
    dup_b = make_memory("Refund window", "Thirty days.")
    stale = make_memory("Fax", "We accept faxes.")
    fix = make_memory("Hours", "9 to 5.")
    dream, (add, merge, supersede, retire, update) = _dream_with(
        store,
        (ChangeOperation.ADD, [], {"title": "New", "content": "Fresh fact.", "tags": ["fact"]}),
        (ChangeOperation.MERGE, [dup_a, dup_b], {"title": "Refund window", "content": "30 days."}),
        (ChangeOperation.SUPERSEDE, [old], {"title": "Tone", "content": "Be friendly."}),
        (ChangeOperation.RETIRE, [stale], {}),
        (ChangeOperation.UPDATE, [fix], {"content": "9 to 6."}),
    )
    for change in (add, merge, supersede, retire, update):
        services.dream_change_approve(change=change, actor=bob)

    add.refresh_from_db()
    new = add.result_memory
    assert new.status == MemoryStatus.ACTIVE and new.tags == ["fact"]
    assert new.provenance == {"run_ids": [11, 12], "step_ids": [], "evaluation_ids": [5]}
    assert new.current_version.actor == bob
    assert new.current_version.actor_name == f"bob for {dream.label}"
    dup_a.refresh_from_db()
    dup_b.refresh_from_db()
    assert (dup_a.status, dup_a.content, dup_a.current_version.operation) == (
        MemoryStatus.ACTIVE,
        "30 days.",
        VersionOperation.MERGE,
    )
    assert dup_a.title == "Refund window"
    assert (dup_b.status, dup_b.superseded_by) == (MemoryStatus.SUPERSEDED, dup_a)
    old.refresh_from_db()
    supersede.refresh_from_db()
    assert old.status == MemoryStatus.SUPERSEDED
    assert old.superseded_by == supersede.result_memory
    assert supersede.result_memory.content == "Be friendly."
    stale.refresh_from_db()
    assert stale.status == MemoryStatus.RETIRED
    fix.refresh_from_db()
    assert (fix.title, fix.content) == ("Hours", "9 to 6.")
    assert set(dream.changes.values_list("status", flat=True)) == {ChangeStatus.APPROVED}
    assert AuditEvent.objects.filter(verb="dream_change.approve").count() == 5
    with pytest.raises(ValidationError, match="already approved"):
        services.dream_change_approve(change=add, actor=bob)


def test_a_change_whose_target_moved_on_is_refused(store, alice, bob, make_memory):
    memory = make_memory("Hours", "9 to 5.")
    _, (update,) = _dream_with(store, (ChangeOperation.UPDATE, [memory], {"content": "9-6"}))
    services.memory_edit(memory=memory, actor=alice, title="Hours", content="8 to 5.", tags=[])
    with pytest.raises(ValidationError, match="changed since the dream"):
        services.dream_change_approve(change=update, actor=bob)
    services.memory_retire(memory=memory, actor=alice)
    with pytest.raises(ValidationError, match="no longer applies"):
        services.dream_change_approve(change=update, actor=bob)
    services.dream_change_reject(change=update, actor=bob)
    update.refresh_from_db()
    assert update.status == ChangeStatus.REJECTED and update.decided_by == bob


def test_decide_all_applies_what_it_can(store, alice, bob, make_memory):
    memory = make_memory("Hours", "9 to 5.")
    dream, (add, update) = _dream_with(
        store,
        (ChangeOperation.ADD, [], {"title": "New", "content": "Fresh."}),
        (ChangeOperation.UPDATE, [memory], {"content": "9 to 6."}),
    )
    services.memory_retire(memory=memory, actor=alice)
    decided, problems = services.dream_changes_decide_all(dream=dream, actor=bob, approve=True)
    assert [c.pk for c in decided] == [add.pk]
    assert [(c.pk, "no longer applies" in message) for c, message in problems] == [
        (update.pk, True)
    ]
    decided, problems = services.dream_changes_decide_all(dream=dream, actor=bob, approve=False)
    assert [c.pk for c in decided] == [update.pk] and not problems
    assert Memory.objects.filter(store=store, title="New", status="active").exists()


@pytest.mark.django_db(transaction=True)
def test_two_dreams_started_at_the_same_moment_one_is_refused(store, alice):
    import threading

    from django.db import connection

    barrier = threading.Barrier(4)
    outcomes = []

    def start():
        try:
            barrier.wait()
            services.dream_start(store=store, actor=alice, enqueue=False)
            outcomes.append("started")
        except services.DreamAlreadyActive as error:
            outcomes.append(" ".join(error.messages))
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("started") == 1
    assert all("already in progress on Support knowledge" in o for o in outcomes if o != "started")
    assert Dream.objects.filter(store=store).count() == 1
