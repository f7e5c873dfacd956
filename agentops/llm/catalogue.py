"""The models a team can choose for an agent.

A built-in list of current Claude models; every agent form takes its choices from
`model_choices(team)`, so a later per-team catalogue changes one function.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogueModel:
    id: str
    display_name: str


MODELS = [
    CatalogueModel("claude-opus-4-5", "Claude Opus 4.5"),
    CatalogueModel("claude-sonnet-4-5", "Claude Sonnet 4.5"),
    CatalogueModel("claude-haiku-4-5", "Claude Haiku 4.5"),
]


def model_choices(team) -> list[tuple[str, str]]:
    """(model id, display name) pairs the team may pick from, best first."""
    return [(model.id, model.display_name) for model in MODELS]
