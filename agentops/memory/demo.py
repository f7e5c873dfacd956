"""Demo memory: a store attached to the support agent, a finished dream over real
(simulated) runs with one approved and one pending change, and runs that used the store's
memories. Everything goes through the services and the simulator; idempotent."""

from agentops.agents.models import Agent
from agentops.runs.models import RunTrigger
from agentops.runs.services import run_execute_inline, run_start

from . import services
from .dreaming import dream_execute_inline
from .models import AttachmentMode, ChangeOperation, DreamTrigger, MemoryStore

STORE_NAME = "Support playbook"
REFUNDS = "Refunds are possible within 30 days of delivery."
ENTERPRISE = "Enterprise customers have a dedicated account manager."
TICKETS = [
    f"Ticket 311: a customer wants to return headphones. {REFUNDS}",
    f"Ticket 312: an Enterprise customer asks who to call about billing. {ENTERPRISE}",
    f"Ticket 313: a refund request for a late parcel. {REFUNDS} {ENTERPRISE}",
]
LATER_TICKETS = [
    "Ticket 320: can I still return a blender I received three weeks ago?",
    "Ticket 321: an Enterprise customer needs an invoice copy.",
]


def seed_demo_data(*, team, owner, reviewer):
    if MemoryStore.objects.filter(team=team, name=STORE_NAME).exists():
        return
    agent = Agent.objects.filter(team=team, name="Support writer").first()
    if agent is None or agent.current_version is None:
        return
    store = services.memory_store_create(
        team=team,
        actor=owner,
        name=STORE_NAME,
        description="What the support agents learned from past tickets.",
        instructions="Apply these policies when they fit the ticket; never contradict them.",
    )
    services.attachment_add(
        store=store,
        actor=owner,
        agent=agent,
        mode=AttachmentMode.READ_WRITE,
        token_budget=600,
        holdout_share=0.2,
    )
    services.memory_create(
        store=store,
        actor=owner,
        title="Refund policy",
        content="Refunds are possible within 30 days after delivery.",
        tags=["policy", "refunds"],
    )
    services.memory_create(
        store=store,
        actor=owner,
        title="Sign-off",
        content="End every reply with the agent's first name and the ticket number.",
        tags=["style"],
    )
    for text in TICKETS:
        run_execute_inline(
            run=run_start(agent=agent, input=text, actor=owner, trigger=RunTrigger.DEMO)
        )
    dream = services.dream_start(store=store, actor=owner, trigger=DreamTrigger.DEMO, enqueue=False)
    dream = dream_execute_inline(dream_id=dream.pk)
    # The merge of the near-duplicate refund fact is approved; the new fact waits for review.
    for change in dream.changes.filter(operation=ChangeOperation.MERGE):
        services.dream_change_approve(change=change, actor=reviewer)
    for text in LATER_TICKETS:
        run_execute_inline(
            run=run_start(agent=agent, input=text, actor=owner, trigger=RunTrigger.DEMO)
        )
