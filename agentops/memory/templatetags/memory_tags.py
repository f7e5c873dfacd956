"""Memory on other apps' pages: what a run was given, what an agent reads."""

from django import template

from agentops.memory.models import Memory, MemoryUse, StoreAttachment

register = template.Library()


@register.inclusion_tag("memory/_run_memories.html")
def run_memories(run):
    uses = list(MemoryUse.objects.filter(run=run).select_related("store", "thread"))
    ids = {memory_id for use in uses for memory_id in use.memory_ids}
    memories = Memory.objects.in_bulk(ids)
    rows = [
        {
            "use": use,
            "memories": [memories[i] for i in use.memory_ids if i in memories],
        }
        for use in uses
    ]
    return {"rows": rows}


@register.inclusion_tag("memory/_agent_stores.html")
def agent_memory_stores(agent):
    attachments = StoreAttachment.objects.filter(agent=agent, store__team_id=agent.team_id)
    return {"attachments": attachments.select_related("store").order_by("store__name")}
