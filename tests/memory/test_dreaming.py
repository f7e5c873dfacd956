"""Dreams over seeded sessions, through the simulator's dreamer."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from agentops.agents.services import agent_create
from agentops.llm.catalogue import DEFAULT_MODEL
from agentops.memory import dreaming, services
from agentops.memory.models import (
    AttachmentMode,
    ChangeOperation,
    ChangeStatus,
    Dream,
    DreamStatus,
    Memory,
    MemoryStatus,
)
from agentops.outcomes.models import Verdict
from tests.outcomes.factories import grade, graded_evaluation, make_rubric

FACT = "Our refund window is 30 days from delivery."
LESSON = "Always quote the order number in the answer."


@pytest.fixture
def sessions(attached, support_agent, run_agent, team_a, alice):
    """Three runs that state the same fact, and two evaluations whose feedback (the same
    lesson) turned a needs_revision draft into a satisfied one."""
    runs = [
        run_agent(support_agent, f"Customer {n} wants a refund for order {n}. {FACT}")
        for n in (101, 102, 103)
    ]
    rubric = make_rubric(team_a, alice)
    evaluations = [
        graded_evaluation(
            team_a,
            rubric,
            [grade(accuracy=2, feedback=LESSON), grade(feedback="Good now.")],
            task=f"Reply to ticket {n}.",
            agent_version=support_agent.current_version,
        )
        for n in (7, 8)
    ]
    assert [e.verdict for e in evaluations] == [Verdict.SATISFIED] * 2
    return runs, evaluations


def _dream(store, actor, **options):
    dream = services.dream_start(store=store, actor=actor, enqueue=False, **options)
    return dreaming.dream_execute_inline(dream_id=dream.pk, sleep=lambda seconds: None)


def test_a_dream_proposes_the_expected_changes(sim, store, sessions, make_memory, alice):
    runs, evaluations = sessions
    existing = make_memory("Refund window", "The refund window is 30 days after delivery.")
    sim.clear()
    dream = _dream(store, alice)

    assert dream.status == DreamStatus.SUCCEEDED, dream.error
    assert (dream.progress_done, dream.progress_total) == (1, 1)
    assert len(dream.session_run_ids) == 5 and dream.simulated
    changes = list(dream.changes.order_by("position"))
    assert [(c.operation, c.status) for c in changes] == [
        (ChangeOperation.MERGE, ChangeStatus.PENDING),
        (ChangeOperation.ADD, ChangeStatus.PENDING),
    ]
    merge, add = changes
    # The recurring fact nearly repeats an existing memory: a merge into it, not a new one.
    assert list(merge.targets.all()) == [existing]
    assert merge.similarity >= 0.6 and "nearly repeats" in merge.rationale
    assert merge.before[0]["content"] == existing.content
    # The merged text keeps the memory's words and adds only what it did not say yet.
    assert merge.content == f"{existing.content}\n\nStated in 3 sessions."
    assert sorted(e["run_id"] for e in merge.evidence) == sorted(r.pk for r in runs)
    # The lesson of needs_revision -> satisfied, from both evaluations.
    assert add.title == LESSON.rstrip(".")
    assert "lesson" in add.tags
    assert sorted(e["evaluation_id"] for e in add.evidence) == sorted(e.pk for e in evaluations)
    assert add.provenance()["evaluation_ids"] == sorted(e.pk for e in evaluations)
    # One forced tool call, with the sessions in the message and the store's memories in
    # the system prompt.
    (body,) = [b for b in sim.bodies() if b.get("tool_choice", {}).get("type") == "tool"]
    assert body["tool_choice"] == {"type": "tool", "name": "propose_memory_changes"}
    assert f"[id {existing.pk}] Refund window" in body["system"]
    assert f"## Session: run {runs[0].pk}" in body["messages"][0]["content"]
    store.refresh_from_db()
    assert store.last_dream_at == dream.sessions_before
    # Nothing changed in the store until a reviewer decides.
    assert Memory.objects.filter(store=store).count() == 1


def test_approved_dream_memory_reaches_the_next_run(
    sim, store, sessions, support_agent, run_agent, alice, bob
):
    dream = _dream(store, alice)
    lesson, fact = dream.changes.order_by("-position")
    assert (lesson.operation, fact.operation) == (ChangeOperation.ADD, ChangeOperation.ADD)
    services.dream_change_approve(change=lesson, actor=bob)
    services.dream_change_reject(change=fact, actor=bob)
    sim.clear()
    run_agent(support_agent, "Reply to the order question.")
    system = sim.bodies()[0]["system"]
    assert LESSON in system and FACT not in system


def test_the_next_dream_reads_only_newer_sessions(
    sim, store, sessions, support_agent, run_agent, alice
):
    first = _dream(store, alice)
    assert len(first.session_run_ids) == 5
    newer = run_agent(support_agent, f"Another refund. {FACT}")
    second = _dream(store, alice)
    assert second.session_run_ids == [f"run:{newer.pk}"]
    assert not second.changes.exists()  # one session: nothing recurs


def test_a_narrower_dream_leaves_the_other_sessions_for_the_next_one(
    sim, store, sessions, run_agent, team_a, alice
):
    other = agent_create(
        team=team_a,
        actor=alice,
        name="Copy editor",
        model=DEFAULT_MODEL,
        system_prompt="You edit copy.",
        max_tokens=512,
    )
    services.attachment_add(store=store, actor=alice, agent=other, mode=AttachmentMode.READ_ONLY)
    run_agent(other, "Tighten this paragraph.")
    narrow = _dream(store, alice, agents=[other])
    assert len(narrow.session_run_ids) == 1
    graded = _dream(store, alice, verdict=Verdict.SATISFIED)
    assert len(graded.session_run_ids) == 2
    store.refresh_from_db()
    assert store.last_dream_at is None  # neither read everything
    full = _dream(store, alice)
    assert len(full.session_run_ids) == 6  # the support agent's five and the editor's run
    store.refresh_from_db()
    assert store.last_dream_at == full.sessions_before
    assert _dream(store, alice).session_run_ids == []


def test_sessions_by_agent_range_and_verdict(sim, store, sessions, alice, team_a):
    runs, evaluations = sessions
    only_graded = _dream(store, alice, verdict=Verdict.SATISFIED)
    assert sorted(only_graded.session_run_ids) == sorted(f"evaluation:{e.pk}" for e in evaluations)
    tomorrow = timezone.localdate() + timedelta(days=1)
    empty = _dream(store, alice, since=tomorrow)
    assert empty.session_run_ids == [] and empty.status == DreamStatus.SUCCEEDED
    assert not empty.changes.exists()


def test_a_graded_run_is_read_once_as_its_evaluation(sim, store, sessions, alice):
    runs, evaluations = sessions
    graded = runs[0]
    evaluations[0].run = graded
    evaluations[0].save(update_fields=["run"])
    dream = _dream(store, alice)
    assert f"evaluation:{evaluations[0].pk}" in dream.session_run_ids
    assert f"run:{graded.pk}" not in dream.session_run_ids
    assert f"run:{runs[1].pk}" in dream.session_run_ids  # ungraded runs still count
    assert len(dream.session_run_ids) == 4


def test_large_inputs_are_read_in_chunks_with_progress(sim, store, sessions, alice, settings):
    settings.AGENTOPS_DREAM_CHUNK_CHARS = 1000
    sim.clear()
    dream = _dream(store, alice)
    assert dream.status == DreamStatus.SUCCEEDED
    assert dream.progress_total > 1 and dream.progress_done == dream.progress_total
    calls = [b for b in sim.bodies() if b.get("tool_choice", {}).get("type") == "tool"]
    assert len(calls) == dream.progress_total
    assert sum(len(chunk) for chunk in dream.chunks) == 5


def test_a_transient_error_requeues_and_the_dream_resumes(sim, store, sessions, alice):
    dream = services.dream_start(store=store, actor=alice, enqueue=False)
    sim.fail_next(529)
    delay = dreaming.dream_execute(dream_id=dream.pk)
    dream.refresh_from_db()
    assert delay is not None and delay > 0
    assert (dream.status, dream.attempts, dream.progress_done) == (DreamStatus.QUEUED, 1, 0)
    assert "Retrying" in dream.error
    assert dreaming.dream_execute(dream_id=dream.pk) is None
    dream.refresh_from_db()
    assert dream.status == DreamStatus.SUCCEEDED and dream.changes.count() == 2


def test_a_permanent_error_fails_the_dream_with_its_reason(sim, store, sessions, alice):
    dream = services.dream_start(store=store, actor=alice, enqueue=False)
    sim.fail_next(400, error_type="invalid_request_error", message="bad request body")
    dreaming.dream_execute(dream_id=dream.pk)
    dream.refresh_from_db()
    assert dream.status == DreamStatus.FAILED
    assert "part 1 failed" in dream.error and "bad request body" in dream.error
    # The store is free for the next dream.
    services.dream_start(store=store, actor=alice, enqueue=False)


def test_a_dream_counts_toward_the_team_monthly_budget(sim, store, sessions, alice, team_a):
    from agentops.runs.services import team_month_usage

    before = team_month_usage(team_a)["tokens"]  # the sessions' runs
    dream = _dream(store, alice)
    assert dream.status == DreamStatus.SUCCEEDED
    dream_tokens = dream.input_tokens + dream.output_tokens
    assert dream_tokens and team_month_usage(team_a)["tokens"] == before + dream_tokens


def test_a_dream_stops_at_the_team_monthly_budget(sim, store, sessions, alice, team_a):
    from agentops.runs.models import TeamBudget
    from agentops.runs.services import team_month_usage

    TeamBudget.objects.create(team=team_a, monthly_tokens=team_month_usage(team_a)["tokens"])
    calls = len(sim.received)
    dream = _dream(store, alice)
    assert dream.status == DreamStatus.FAILED
    assert "Team monthly token budget reached" in dream.error
    assert len(sim.received) == calls  # no model call was made


def test_auto_apply_approves_the_changeset(sim, store, sessions, alice):
    services.memory_store_update(store=store, actor=alice, auto_apply=True)
    dream = _dream(store, alice)
    assert set(dream.changes.values_list("status", flat=True)) == {ChangeStatus.APPROVED}
    memory = Memory.objects.get(store=store, title=LESSON.rstrip("."))
    assert memory.status == MemoryStatus.ACTIVE
    assert memory.current_version.actor is None
    assert memory.current_version.actor_label == f"{dream.label} (auto-apply)"


def test_build_changeset_folds_near_duplicate_proposals():
    def add(title, content, run_id):
        return {
            "operation": "add",
            "target_ids": [],
            "title": title,
            "content": content,
            "tags": [],
            "rationale": "r",
            "evidence": [{"run_id": run_id, "evaluation_id": None, "quote": title}],
        }

    changes = dreaming.build_changeset(
        [
            add("Quote the order number", "Always quote the order number.", 1),
            add("Quote order numbers", "Always quote the order number!", 2),
            add("Be brief", "Keep replies under five sentences.", 3),
        ],
        [],
    )
    assert [(c["title"], [e["run_id"] for e in c["evidence"]]) for c in changes] == [
        ("Quote the order number", [1, 2]),
        ("Be brief", [3]),
    ]


def test_proposals_citing_unread_sessions_or_unknown_memories_are_dropped(store, make_memory):
    memory = make_memory("Hours", "9 to 5.")
    cleaned = dreaming.clean_proposals(
        {
            "changes": [
                {
                    "operation": "retire",
                    "target_ids": [memory.pk],
                    "rationale": "old",
                    "evidence": [{"run_id": 5, "quote": "closed"}],
                },
                {
                    "operation": "retire",
                    "target_ids": [999999],
                    "rationale": "x",
                    "evidence": [{"run_id": 5}],
                },
                {
                    "operation": "add",
                    "title": "T",
                    "content": "C",
                    "rationale": "x",
                    "evidence": [{"run_id": 6}],
                },
                {"operation": "explode", "rationale": "x", "evidence": [{"run_id": 5}]},
            ]
        },
        session_keys=["run:5"],
        store=store,
    )
    assert [(c["operation"], c["target_ids"]) for c in cleaned] == [("retire", [memory.pk])]


def test_dream_command_waits_and_refuses_a_second_dream(sim, store, sessions, alice, capsys):
    call_command("dream", store.slug, "--wait")
    out = capsys.readouterr().out
    assert "read 5 session(s) in 1 part(s) and proposed 2 change(s)" in out
    Dream.objects.create(team=store.team, store=store, model="m", status=DreamStatus.RUNNING)
    with pytest.raises(CommandError, match="already in progress"):
        call_command("dream", store.slug, "--wait")
    with pytest.raises(CommandError, match="No memory store"):
        call_command("dream", "no-such-store")


def test_tick_requeues_lost_dreams_and_starts_scheduled_ones(
    store, alice, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(
        "agentops.memory.tasks.dream_execute_task.delay", lambda dream_id: sent.append(dream_id)
    )
    lost = Dream.objects.create(
        team=store.team,
        store=store,
        model="m",
        status=DreamStatus.RUNNING,
        heartbeat_at=timezone.now() - timedelta(hours=2),
    )
    requeued, started = dreaming.dreams_tick()
    lost.refresh_from_db()
    assert (requeued, started) == (1, 0)
    assert lost.status == DreamStatus.QUEUED and lost.attempts == 1 and sent == [lost.pk]

    lost.status = DreamStatus.SUCCEEDED
    lost.save()
    Dream.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(hours=30))
    services.memory_store_update(store=store, actor=alice, dream_every_hours=24)
    with django_capture_on_commit_callbacks():
        assert dreaming.dreams_tick() == (0, 1)
    assert store.dreams.filter(trigger="schedule", status=DreamStatus.QUEUED).count() == 1
    assert dreaming.dreams_tick()[1] == 0  # not due again


def test_a_refused_part_gives_no_proposals_and_all_refused_fails(
    sim, store, attached, support_agent, run_agent, alice, settings
):
    settings.AGENTOPS_DREAM_CHUNK_CHARS = 1000
    for n in (1, 2):
        run_agent(support_agent, f"Ticket {n}. {FACT}")
    # The simulator refuses a request whose text carries this marker; so would a model
    # that declines the content. The marker rides in a run's input into the dream's prompt.
    run_agent(support_agent, "Ticket 3 [sim:refusal]")
    Run = support_agent.runs.model
    Run.objects.filter(input__contains="[sim:refusal]").update(status="succeeded")
    dream = _dream(store, alice)
    assert dream.status == DreamStatus.SUCCEEDED
    assert "declined 1 of" in dream.error
    assert [c.get("refused") for c in dream.raw_proposals].count(True) == 1

    # A dream whose only part is refused fails, saying why.
    from agentops.agents.services import agent_create

    other = agent_create(
        team=store.team,
        actor=alice,
        name="Other bot",
        model=support_agent.current_version.model,
        system_prompt="Help.",
        max_tokens=512,
    )
    refused_run = run_agent(other, "Ticket 4 [sim:refusal]")
    Run.objects.filter(pk=refused_run.pk).update(status="succeeded")
    second = services.memory_store_create(team=store.team, actor=alice, name="Second")
    services.attachment_add(store=second, actor=alice, agent=other, mode="read_only")
    failed = _dream(second, alice)
    assert failed.status == DreamStatus.FAILED
    assert "refused every part" in failed.error


def test_evaluation_sessions_carry_lessons_and_human_overrides(team_a, alice, bob, support_agent):
    from agentops.outcomes.services import evaluation_review

    rubric = make_rubric(team_a, alice)
    evaluation = graded_evaluation(
        team_a,
        rubric,
        [grade(accuracy=2, feedback=LESSON), grade(feedback="Good now.")],
        agent_version=support_agent.current_version,
    )
    evaluation_review(
        evaluation=evaluation, reviewer=bob, verdict=Verdict.FAILED, note="It promised a refund."
    )
    (session,) = dreaming.load_sessions([f"evaluation:{evaluation.pk}"])
    text = session.render()
    assert f"## Session: evaluation {evaluation.pk}" in text
    assert (
        f"Lesson (evaluation {evaluation.pk}, needs_revision → satisfied after iteration 1's "
        f"feedback): {LESSON}"
    ) in text
    assert (
        f"Human override (evaluation {evaluation.pk}, grader satisfied → reviewer failed): "
        "It promised a refund."
    ) in text


def test_a_failed_dream_s_page_says_it_failed_not_that_nothing_recurred(
    sim, store, sessions, alice, alice_client
):
    from django.urls import reverse

    dream = services.dream_start(store=store, actor=alice, enqueue=False)
    sim.fail_next(400, error_type="invalid_request_error", message="bad request body")
    dreaming.dream_execute(dream_id=dream.pk)
    page = alice_client.get(reverse("memory:dream", args=[dream.pk])).text
    assert "This dream failed before it could propose changes" in page
    assert "nothing recurred" not in page


def test_a_change_already_decided_or_pending_is_not_proposed_again(
    sim, store, sessions, make_memory, alice, bob
):
    # Narrower dreams leave the store's sessions unread, so each reads the same five again.
    existing = make_memory("Refund window", "The refund window is 30 days after delivery.")
    since = timezone.localdate() - timedelta(days=1)
    first = _dream(store, alice, since=since)
    merge, add = first.changes.order_by("position")
    assert (merge.operation, add.operation) == (ChangeOperation.MERGE, ChangeOperation.ADD)
    services.dream_change_approve(change=merge, actor=bob)

    # The merge is in the memory now (approving the same words again would change nothing)
    # and the lesson waits for a reviewer in the first dream: nothing new to propose.
    second = _dream(store, alice, since=since)
    assert second.status == DreamStatus.SUCCEEDED and len(second.session_run_ids) == 5
    assert not second.changes.exists()

    # A rejected change does not come back either.
    services.dream_change_reject(change=add, actor=bob)
    assert not _dream(store, alice, since=since).changes.exists()
    existing.refresh_from_db()
    assert existing.current_version.number == 2  # created, then the one merge
    assert not Memory.objects.filter(store=store, title=LESSON.rstrip(".")).exists()


def test_an_addition_the_store_already_holds_is_refused_when_approved(
    sim, store, sessions, make_memory, alice, bob
):
    dream = _dream(store, alice)
    lesson = dream.changes.get(operation=ChangeOperation.ADD, title=LESSON.rstrip("."))
    # Meanwhile a member writes the same lesson by hand.
    make_memory(lesson.title, lesson.content)
    with pytest.raises(ValidationError, match=f"already has “{lesson.title}”"):
        services.dream_change_approve(change=lesson, actor=bob)
    lesson.refresh_from_db()
    assert lesson.status == ChangeStatus.PENDING
    decided, problems = services.dream_changes_decide_all(dream=dream, actor=bob, approve=True)
    assert [change.pk for change, _ in problems] == [lesson.pk]
    assert "no longer applies" in problems[0][1]
    assert Memory.objects.filter(store=store, title=lesson.title).count() == 1  # the member's


def test_approving_a_change_that_leaves_its_memory_as_it_is_is_refused(
    sim, store, sessions, make_memory, alice, bob
):
    existing = make_memory("Refund window", "The refund window is 30 days after delivery.")
    merge = _dream(store, alice).changes.get(operation=ChangeOperation.MERGE)
    # A change proposed before dreams checked for this (or written so by hand).
    merge.title, merge.content, merge.tags = existing.title, existing.content, existing.tags
    merge.save()
    with pytest.raises(ValidationError, match="as it is"):
        services.dream_change_approve(change=merge, actor=bob)
    existing.refresh_from_db()
    assert existing.current_version.number == 1


def test_build_changeset_drops_a_merge_that_changes_nothing(store, make_memory):
    memory = make_memory("Refund window", "Refunds within 30 days.\n\nStated in 3 sessions.")
    proposal = {
        "operation": "add",
        "target_ids": [],
        "title": "Refund window",
        "content": "Refunds within 30 days.",
        "tags": [],
        "rationale": "r",
        "evidence": [{"run_id": 1, "evaluation_id": None, "quote": "q"}],
    }
    assert dreaming.build_changeset([proposal], [memory]) == []
    grown = {**proposal, "content": f"{memory.content}\n\nKeep the receipt."}
    (merge,) = dreaming.build_changeset([grown], [memory])
    assert merge["operation"] == ChangeOperation.MERGE
    assert merge["content"] == f"{memory.content}\n\nKeep the receipt."
