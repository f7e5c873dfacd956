"""Memory on other apps' pages: what a run was given."""

from django import template

from agentops.memory.models import Memory, MemoryUse

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
