from agentops.agents.demo import seed_demo_data as seed_agents
from agentops.memory.demo import STORE_NAME, seed_demo_data
from agentops.memory.models import ChangeStatus, MemoryStore, MemoryUse


def test_demo_store_has_a_finished_dream_and_runs_that_used_memory(sim, team_a, alice, bob):
    seed_agents(team=team_a, owner=alice, reviewer=bob)
    seed_demo_data(team=team_a, owner=alice, reviewer=bob)
    seed_demo_data(team=team_a, owner=alice, reviewer=bob)  # idempotent
    store = MemoryStore.objects.get(team=team_a, name=STORE_NAME)
    (dream,) = store.dreams.all()
    assert dream.status == "succeeded"
    statuses = sorted(dream.changes.values_list("operation", "status"))
    assert statuses == [("add", ChangeStatus.PENDING), ("merge", ChangeStatus.APPROVED)]
    given = MemoryUse.objects.filter(store=store, held_out=False).exclude(memory_ids=[])
    assert given.exists()
