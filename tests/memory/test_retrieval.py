import pytest

from agentops.memory import retrieval, services
from agentops.memory.models import MemoryStatus


def test_near_duplicates_by_word_overlap():
    assert retrieval.similarity(
        "Refund window", "The refund window is 30 days.", "Refunds", "Refund window: 30 days"
    ) == pytest.approx(1.0)
    assert retrieval.similarity("Shipping", "Ships in 2 days.", "Refunds", "30 days.") < 0.3


def test_nearest_duplicate_respects_the_threshold(make_memory):
    refunds = make_memory("Refund window", "Refunds are accepted within 30 days of delivery.")
    make_memory("Shipping", "Orders ship within 2 business days.")
    found, score = retrieval.nearest_duplicate(
        "The refund window", "Refunds accepted within 30 days of the delivery.", [refunds]
    )
    assert found == refunds and score >= retrieval.NEAR_DUPLICATE_THRESHOLD
    assert retrieval.nearest_duplicate("Greeting", "Say hello politely.", [refunds]) == (None, 0.0)


def test_prompt_ranks_by_relevance_within_the_budget(attached, make_memory, support_agent):
    make_memory("Shipping times", "Orders ship within 2 business days.")
    refunds = make_memory("Refund window", "Refunds are accepted within 30 days.")
    make_memory("Old", "Retired.", status=MemoryStatus.RETIRED)
    proposed = make_memory("Pending", "Proposed refund idea.", status=MemoryStatus.PROPOSED)
    text, ids = retrieval.memories_for_prompt(support_agent, "Can I get a refund?")
    assert ids[0] == refunds.pk and len(ids) == 2
    assert proposed.pk not in ids
    assert "Prefer these facts over guesses." in text  # the store's instructions
    assert f"[memory {refunds.pk}]" in text
    assert text.index("Refund window") < text.index("Shipping times")

    # A budget that holds one memory gives only the most relevant one.
    attached.token_budget = retrieval.estimate_tokens(retrieval.render_memory(refunds))
    attached.save()
    assert retrieval.memories_for_prompt(support_agent, "refund")[1] == [refunds.pk]


def test_agents_without_a_store_get_nothing(support_agent, make_memory):
    make_memory("Refund window", "30 days.")
    assert retrieval.memories_for_prompt(support_agent, "refund") == ("", [])


def test_search_finds_by_words_and_ignores_inactive(store, make_memory):
    refunds = make_memory("Refund window", "Refunds are accepted within 30 days.")
    make_memory("Shipping", "Orders ship within 2 business days.")
    make_memory("Old refunds", "Refunds took 14 days.", status=MemoryStatus.RETIRED)
    assert retrieval.memory_search(store, "refunds") == [refunds]
    assert retrieval.memory_search(store, "nothing matches this") == []


def test_search_works_on_the_portable_fallback(store, make_memory, monkeypatch):
    refunds = make_memory("Refund window", "Refunds are accepted within 30 days.")
    shipping = make_memory("Shipping", "Orders ship within 2 days; refunds separately.")
    monkeypatch.setattr(retrieval.connection, "vendor", "sqlite")
    assert retrieval.memory_search(store, "refund window") == [refunds, shipping]


def test_holdout_is_deterministic_and_close_to_the_share():
    held = [retrieval.is_held_out(run_id, 0.3, 1) for run_id in range(2000)]
    assert held == [retrieval.is_held_out(run_id, 0.3, 1) for run_id in range(2000)]
    assert 0.26 < sum(held) / len(held) < 0.34
    assert not any(retrieval.is_held_out(run_id, 0, 1) for run_id in range(100))


def test_held_out_run_gets_no_memories(attached, make_memory, support_agent):
    make_memory("Refund window", "30 days.")
    attached.holdout_share = 0.5
    attached.save()
    outcomes = {
        run_id: retrieval.select_for_prompt(support_agent, "refund", run_id=run_id)[0]
        for run_id in range(40)
    }
    held = [s for s in outcomes.values() if s.held_out]
    given = [s for s in outcomes.values() if s.memories]
    assert held and given and len(held) + len(given) == 40
    assert all(s.text == "" for s in held)


def test_proposal_provenance_merges(store, alice):
    memory = services.memory_create(
        store=store, actor=alice, title="T", content="C", provenance={"run_ids": [3, 1]}
    )
    assert memory.provenance["run_ids"] == [1, 3]
