"""Memory in runs: what the simulator receives, the memory tools, the transcript."""

from django.urls import reverse

from agentops.memory import services
from agentops.memory.models import (
    AttachmentMode,
    Memory,
    MemoryStatus,
    MemoryUse,
    StoreAttachment,
)
from agentops.runs.models import StepKind


def _systems(sim):
    return [body.get("system", "") for body in sim.bodies()]


def test_only_active_memories_reach_the_next_run(
    sim, attached, make_memory, support_agent, run_agent, alice, bob
):
    active = make_memory("Refund window", "Refunds are accepted within 30 days.")
    proposed = make_memory("Refund fees", "A refund costs a fee.", status=MemoryStatus.PROPOSED)
    rejected = make_memory("Refund by fax", "Fax the refund form.", status=MemoryStatus.PROPOSED)
    services.memory_reject(memory=rejected, actor=bob)

    run = run_agent(support_agent, "How do refunds work?")
    assert run.status == "succeeded"
    (system,) = _systems(sim)
    assert system.startswith("You answer customer questions.")
    assert "Refunds are accepted within 30 days." in system
    assert "A refund costs a fee." not in system and "Fax the refund form." not in system
    use = MemoryUse.objects.get(run=run)
    assert use.memory_ids == [active.pk] and not use.held_out
    step = run.steps.get(kind=StepKind.MODEL_CALL)
    assert step.request["memory_ids"] == [active.pk]

    # Approving the proposal makes the next run get it too; the rejected one never.
    services.memory_approve(memory=proposed, actor=bob)
    sim.clear()
    run_agent(support_agent, "How do refunds work?")
    (system,) = _systems(sim)
    assert "A refund costs a fee." in system and "Fax the refund form." not in system


def test_a_held_out_run_gets_no_memories_and_no_memory_tools(
    sim, attached, make_memory, support_agent, run_agent
):
    make_memory("Refund window", "Refunds are accepted within 30 days.")
    attached.holdout_share = 0.9
    attached.save()
    held = None
    for _ in range(12):
        sim.clear()
        run = run_agent(support_agent, "Refunds?")
        use = MemoryUse.objects.get(run=run)
        if use.held_out:
            held = run
            break
    assert held is not None
    (body,) = sim.bodies()
    assert "Refunds are accepted" not in body.get("system", "")
    assert not {tool["name"] for tool in body.get("tools", [])} & {
        "memory_search",
        "memory_propose",
    }


def test_memory_search_tool_finds_memories(sim, attached, make_memory, support_agent, run_agent):
    make_memory("Refund window", "Refunds are accepted within 30 days.")
    attached.token_budget = 1  # nothing fits the prompt: the agent has to search
    attached.save()
    run = run_agent(support_agent, "Use memory_search to look up the refund policy.")
    assert run.status == "succeeded"
    first = sim.bodies()[0]
    assert {t["name"] for t in first["tools"]} == {"memory_search", "memory_propose"}
    assert "Refunds are accepted" not in first.get("system", "")
    tool_step = run.steps.get(kind=StepKind.TOOL_CALL, tool_name="memory_search")
    assert not tool_step.response["is_error"], tool_step.response
    assert "Refund window" in tool_step.response["content"], tool_step.request


def test_memory_propose_waits_for_review(sim, attached, support_agent, run_agent, bob):
    run = run_agent(support_agent, "Use memory_propose to remember that refunds need a receipt.")
    step = run.steps.get(kind=StepKind.TOOL_CALL, tool_name="memory_propose")
    assert not step.response["is_error"], step.response
    memory = Memory.objects.get(store=attached.store)
    assert memory.status == MemoryStatus.PROPOSED
    assert memory.provenance["run_ids"] == [run.pk]
    assert memory.provenance["step_ids"] == [step.pk]
    assert memory.current_version.actor_label == f"run #{run.pk}"
    sim.clear()
    run_agent(support_agent, "Anything about refunds?")
    assert memory.content not in sim.bodies()[0].get("system", "")


def test_read_only_agents_cannot_propose(sim, store, support_agent, run_agent, alice):
    services.attachment_add(
        store=store, actor=alice, agent=support_agent, mode=AttachmentMode.READ_ONLY
    )
    run_agent(support_agent, "Hello there.")
    tools = {t["name"] for t in sim.bodies()[0].get("tools", [])}
    assert tools == {"memory_search"}


def test_agents_without_a_store_are_unchanged(sim, support_agent, run_agent, make_memory):
    make_memory("Refund window", "Refunds are accepted within 30 days.")
    run = run_agent(support_agent, "Refunds?")
    body = sim.bodies()[0]
    assert body.get("system") == "You answer customer questions." and "tools" not in body
    assert not MemoryUse.objects.filter(run=run).exists()


def test_a_store_of_another_team_gives_nothing_even_if_attached(
    sim, support_agent, run_agent, team_b, charlie
):
    # The services refuse this attachment; a row written around them must not leak either.
    foreign = services.memory_store_create(
        team=team_b, actor=charlie, name="Their notes", description="", instructions=""
    )
    services.memory_create(
        store=foreign, actor=charlie, title="Secret", content="Team B's secret.", tags=()
    )
    StoreAttachment.objects.create(
        store=foreign, agent=support_agent, mode=AttachmentMode.READ_ONLY
    )
    run = run_agent(support_agent, "Any secrets?")
    assert run.status == "succeeded"
    body = sim.bodies()[0]
    assert "Team B's secret." not in body.get("system", "") and "tools" not in body
    assert not MemoryUse.objects.filter(run=run).exists()


def test_the_transcript_shows_the_memories_given(
    sim, attached, make_memory, support_agent, run_agent, bob_client
):
    memory = make_memory("Refund window", "Refunds are accepted within 30 days.")
    run = run_agent(support_agent, "Refunds?")
    page = bob_client.get(reverse("runs:detail", args=[run.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Memories given" in html
    assert reverse("memory:detail", args=[memory.pk]) in html
