from django.conf import settings
from django.db import models


class ToolPermission(models.TextChoices):
    ALLOW = "allow", "Always allow"
    ASK = "ask", "Always ask"


class Agent(models.Model):
    """A named agent of a team. Its configuration lives in immutable AgentVersion rows."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80)
    description = models.TextField(blank=True)
    current_version = models.ForeignKey(
        "AgentVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    archived_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "slug"], name="unique_agent_slug_per_team"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_archived(self):
        return self.archived_at is not None


class AgentVersion(models.Model):
    """One saved configuration of an agent. Never edited: a save adds a new version."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    model = models.CharField(max_length=100)
    system_prompt = models.TextField()
    max_tokens = models.PositiveIntegerField(default=1024)
    temperature = models.FloatField(null=True, blank=True)
    thinking_budget = models.PositiveIntegerField(null=True, blank=True)
    # [{"name": "http_fetch", "permission": "allow"}, {"name": "webhook:lookup", ...}]
    tools = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="unique_agent_version"),
        ]

    def __str__(self):
        return f"{self.agent.name} v{self.number}"

    @property
    def team(self):
        return self.agent.team
