from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
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
    # The agent's name and description as they were at this save, so the history and the
    # diff between versions show every change a save made.
    name = models.CharField(max_length=120, blank=True, default="")
    description = models.TextField(blank=True, default="")
    model = models.CharField(max_length=100)
    system_prompt = models.TextField()
    max_tokens = models.PositiveIntegerField(default=1024)
    temperature = models.FloatField(null=True, blank=True)
    thinking_budget = models.PositiveIntegerField(null=True, blank=True)
    # [{"name": "http_fetch", "permission": "allow"}, {"name": "lookup_order", "permission":
    # "ask"}]: built-in tools and the team's webhook tools share one namespace of names.
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

    def snapshot(self):
        """The versioned fields as plain data: what a save compares and a diff shows."""
        return {field: getattr(self, field) for field in VERSIONED_FIELDS}

    def permission_for(self, tool_name):
        """The permission stored for an enabled tool, or None when the tool is not enabled."""
        for entry in self.tools or []:
            if entry.get("name") == tool_name:
                return entry.get("permission", ToolPermission.ASK)
        return None


VERSIONED_FIELDS = [
    "name",
    "description",
    "model",
    "system_prompt",
    "max_tokens",
    "temperature",
    "thinking_budget",
    "tools",
]


class WebhookTool(models.Model):
    """A team's own tool: agentops POSTs the tool input to `url`, the response is the result."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="webhook_tools")
    name = models.CharField(max_length=64)
    description = models.TextField()
    input_schema = models.JSONField(default=dict)
    url = models.URLField(max_length=500)
    # Fernet token (agentops.agents.crypto); the plain secret never reaches the database.
    secret_encrypted = models.TextField()
    timeout_s = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(30)]
    )
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
            models.UniqueConstraint(fields=["team", "name"], name="unique_webhook_tool_name"),
        ]

    def __str__(self):
        return self.name


class HostAllowlistEntry(models.Model):
    """A host the team's tools (http_fetch, webhooks) may reach.

    `host` is an exact host name or IP address, or `*.example.com` for every subdomain.
    A host that resolves to a private, loopback, link-local or otherwise non-public address
    is refused unless its entry says `allow_private`.
    """

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="host_allowlist")
    host = models.CharField(max_length=253)
    allow_private = models.BooleanField(
        default=False, help_text="Allow this host to resolve to a private or loopback address."
    )
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["host"]
        verbose_name_plural = "host allowlist entries"
        constraints = [
            models.UniqueConstraint(fields=["team", "host"], name="unique_allowlisted_host"),
        ]

    def __str__(self):
        return self.host

    def matches(self, host):
        host = host.lower().rstrip(".")
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host
