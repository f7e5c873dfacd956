"""The main navigation and the dashboard tiles."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    key: str
    label: str
    url_name: str
    summary: str = ""  # the dashboard tile's one-line description
    namespaces: tuple = ()  # URL namespaces whose pages belong to this section

    def is_current(self, resolver_match):
        if resolver_match is None:
            return False
        return resolver_match.view_name == self.url_name or resolver_match.namespace in (
            self.namespaces or (self.key,)
        )


SECTIONS = [
    Section(
        "agents",
        "Agents",
        "agents:list",
        "Model, system prompt, tools and memory, with every version kept.",
    ),
    Section(
        "rubrics",
        "Rubrics",
        "rubrics:list",
        "Weighted criteria, a grader and a pass bar; outputs revise until they pass.",
    ),
    Section(
        "workflows",
        "Workflows",
        "workflows:list",
        "A lead agent delegating to specialists in parallel, and schedules.",
    ),
    Section(
        "runs",
        "Runs",
        "runs:list",
        "Every run, live while it works: transcript, tokens, cost and grade.",
    ),
    Section(
        "review", "Review", "review:queue", "Graded outputs waiting for a human: agree or override."
    ),
    Section(
        "memory",
        "Memory",
        "memory:stores",
        "Curated memories and the dreams that propose changes to them.",
    ),
    Section(
        "usage",
        "Usage",
        "llm:usage",
        "Tokens and cost by day, agent and model; the rate-limit state.",
    ),
    Section("settings", "Settings", "teams:settings", namespaces=("teams", "llm")),
]


def current_section(request):
    match = getattr(request, "resolver_match", None)
    return next((s for s in SECTIONS if s.is_current(match)), None)
