from decimal import Decimal

from agentops.agents.services import agent_create
from agentops.llm.models import ModelCallRecord
from agentops.llm.services import usage_summary


def test_usage_by_agent_has_one_row_per_agent_whatever_the_label(team_a, alice):
    agent = agent_create(
        team=team_a,
        actor=alice,
        name="Writer",
        model="claude-haiku-4-5",
        system_prompt="x",
        max_tokens=10,
    )
    for label, tokens in (("run 1", 10), ("run 2", 20), ("run 3", 30)):
        ModelCallRecord.objects.create(
            team=team_a,
            model="claude-haiku-4-5",
            agent=agent,
            label=label,
            input_tokens=tokens,
            cost_usd=Decimal("0.001"),
        )
    ModelCallRecord.objects.create(team=team_a, model="claude-haiku-4-5", label="key test")
    for dream_label in ("dream 4", "dream 5"):
        ModelCallRecord.objects.create(
            team=team_a, model="claude-haiku-4-5", label=dream_label, cost_usd=Decimal("0.01")
        )

    rows = usage_summary(calls=ModelCallRecord.objects.filter(team=team_a))["by_agent"]

    assert [(row.get("agent__name"), row.get("purpose"), row["calls"]) for row in rows] == [
        ("Writer", None, 3),
        (None, "dreams", 2),  # all dreams in one row, not one per dream
        (None, "key test", 1),
    ]
    assert rows[0]["input_tokens"] == 60
