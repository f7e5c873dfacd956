"""Demo agents for the embedded default (idempotent: make run calls it on every start)."""

from .models import Agent
from .services import agent_create

DEMO_AGENTS = [
    {
        "name": "Research assistant",
        "description": "Answers questions with sources, fetching pages from allowlisted hosts.",
        "model": "claude-sonnet-4-6",
        "system_prompt": (
            "You are a careful research assistant. Answer the user's question in a few short "
            "paragraphs. When you use the http_fetch tool, cite the URL you read. Say plainly "
            "when you are not sure."
        ),
        "max_tokens": 2048,
        "temperature": 0.3,
        "tools": [{"name": "http_fetch", "permission": "allow"}],
    },
    {
        "name": "Support writer",
        "description": "Drafts friendly, accurate replies to customer support tickets.",
        "model": "claude-haiku-4-5",
        "system_prompt": (
            "You write replies to customer support tickets. Be warm and brief, answer the "
            "question that was asked, and never promise refunds or dates you cannot confirm."
        ),
        "max_tokens": 1024,
        "temperature": 0.5,
        "tools": [],
    },
]


def seed_demo_data(*, team, owner, reviewer):
    for spec in DEMO_AGENTS:
        if not Agent.objects.filter(team=team, name=spec["name"]).exists():
            agent_create(team=team, actor=owner, **spec)
