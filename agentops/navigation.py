"""The main navigation. A section whose app is not built yet shows an honest empty state."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    key: str
    label: str
    url_name: str
    coming: str = ""  # what will appear here, for sections not built yet
    namespaces: tuple = ()  # URL namespaces whose pages belong to this section

    def is_current(self, resolver_match):
        if resolver_match is None:
            return False
        return resolver_match.view_name == self.url_name or resolver_match.namespace in (
            self.namespaces or (self.key,)
        )


SECTIONS = [
    Section("agents", "Agents", "agents:list"),
    Section("rubrics", "Rubrics", "rubrics:list"),
    Section("workflows", "Workflows", "workflows:list"),
    Section("runs", "Runs", "runs:list"),
    Section("review", "Review", "review:queue"),
    Section(
        "memory",
        "Memory",
        "section-memory",
        "Memory stores with curated memories, and the dreams that propose changes to "
        "them for your approval.",
    ),
    Section("usage", "Usage", "llm:usage"),
    Section("settings", "Settings", "teams:settings", namespaces=("teams", "llm")),
]


def current_section(request):
    match = getattr(request, "resolver_match", None)
    return next((s for s in SECTIONS if s.is_current(match)), None)
