"""Workflows (a lead agent with a roster of specialists), their delegations at run time, and
the schedules that start workflows and agents."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

LIMIT_RANGES = {
    "max_parallel": (1, 50),
    "max_children": (1, 200),
    "max_depth": (1, 5),
}


class WorkflowMode(models.TextChoices):
    DELEGATE = "delegate", "Delegate: the lead decides which specialists to ask"
    FAN_OUT = "fan_out", "Fan-out: every specialist gets the input, then the lead synthesizes"


class Workflow(models.Model):
    """A named workflow of a team. Its configuration lives in immutable WorkflowVersion rows."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="workflows")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80)
    description = models.TextField(blank=True)
    current_version = models.ForeignKey(
        "WorkflowVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    archived_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "slug"], name="unique_workflow_slug_per_team"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_archived(self):
        return self.archived_at is not None


class WorkflowVersion(models.Model):
    """One saved configuration of a workflow. Never edited: a save adds a new version."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    lead_agent = models.ForeignKey("agents.Agent", on_delete=models.PROTECT, related_name="+")
    # Null: the lead's latest version at the time each run starts.
    lead_pinned_version = models.ForeignKey(
        "agents.AgentVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    mode = models.CharField(
        max_length=10, choices=WorkflowMode.choices, default=WorkflowMode.DELEGATE
    )
    max_parallel = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(50)]
    )
    max_children = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(200)]
    )
    max_depth = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    # The run's budget across the whole thread tree; null means no limit of that kind.
    budget_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    budget_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # Each sub-agent stops (and its delegation returns an error) past this many tokens.
    child_budget_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    # The lead's final answer is graded against it, and revised until it passes.
    rubric = models.ForeignKey(
        "outcomes.Rubric", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="unique_workflow_version"),
        ]

    def __str__(self):
        return f"{self.workflow.name} v{self.number}"

    @property
    def team(self):
        return self.workflow.team

    def lead_version(self):
        """The lead agent version a run started now uses."""
        return self.lead_pinned_version or self.lead_agent.current_version

    @property
    def mode_name(self):
        """The mode's label without its explanation ("Fan-out"), for tables and summaries."""
        return self.get_mode_display().split(":")[0]

    @property
    def budget_parts(self):
        """The budgets as the workflow page lists them: the run's, then each sub-agent's."""
        run = [
            f"{self.budget_tokens} tokens" if self.budget_tokens else "",
            f"${self.budget_cost_usd}" if self.budget_cost_usd else "",
        ]
        parts = []
        if any(run):
            parts.append("run: " + ", ".join(part for part in run if part))
        if self.child_budget_tokens:
            parts.append(f"{self.child_budget_tokens} tokens per sub-agent")
        return parts

    def snapshot(self):
        """The versioned configuration as plain data: what a save compares and a diff shows."""
        return {
            "name": self.name,
            "description": self.description,
            "lead": agent_ref(self.lead_agent, self.lead_pinned_version),
            "mode": self.mode,
            "max_parallel": self.max_parallel,
            "max_children": self.max_children,
            "max_depth": self.max_depth,
            "budget_tokens": self.budget_tokens,
            "budget_cost_usd": str(self.budget_cost_usd)
            if self.budget_cost_usd is not None
            else None,
            "child_budget_tokens": self.child_budget_tokens,
            "rubric": rubric_ref(self.rubric),
            "roster": [entry.snapshot() for entry in self.roster.all()],
        }


def agent_ref(agent, pinned):
    return f"{agent.slug}@v{pinned.number}" if pinned else f"{agent.slug}@latest"


def rubric_ref(rubric):
    return rubric.slug if rubric is not None else None


class RosterEntry(models.Model):
    """A specialist the lead may delegate to, with the role description the lead sees."""

    workflow_version = models.ForeignKey(
        WorkflowVersion, on_delete=models.CASCADE, related_name="roster"
    )
    position = models.PositiveSmallIntegerField(default=0)
    agent = models.ForeignKey("agents.Agent", on_delete=models.PROTECT, related_name="+")
    # Null: follow the agent's latest version.
    pinned_version = models.ForeignKey(
        "agents.AgentVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    role_description = models.TextField()
    # The specialist's answer is graded against it and revised until it passes, before it
    # goes back to the lead.
    rubric = models.ForeignKey(
        "outcomes.Rubric", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["workflow_version", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow_version", "agent"], name="unique_specialist_per_version"
            ),
        ]
        verbose_name_plural = "roster entries"

    def __str__(self):
        return f"{self.agent.name} in {self.workflow_version}"

    @property
    def key(self):
        """What the lead names this specialist by in its delegate calls."""
        return self.agent.slug

    def agent_version(self):
        return self.pinned_version or self.agent.current_version

    def snapshot(self):
        return {
            "agent": agent_ref(self.agent, self.pinned_version),
            "role": self.role_description,
            "rubric": rubric_ref(self.rubric),
        }


class WorkflowRun(models.Model):
    """Marks a Run as a run of a workflow version: its lead thread may delegate."""

    run = models.OneToOneField(
        "runs.Run", on_delete=models.CASCADE, primary_key=True, related_name="workflow_run"
    )
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="runs")

    def __str__(self):
        return f"Run {self.run_id} of workflow {self.workflow.name}"


class DelegationStatus(models.TextChoices):
    WAITING = "waiting", "Waiting for a free slot"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    BUDGET_REACHED = "budget_reached", "Over budget"


class Delegation(models.Model):
    """One sub-task handed to a specialist: the parent's `delegate` tool step and the child
    thread that works on it. The child's final output becomes that step's tool result."""

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="delegations")
    parent = models.ForeignKey("runs.Thread", on_delete=models.CASCADE, related_name="+")
    step = models.OneToOneField("runs.Step", on_delete=models.CASCADE, related_name="delegation")
    child = models.OneToOneField("runs.Thread", on_delete=models.CASCADE, related_name="delegation")
    roster_entry = models.ForeignKey(RosterEntry, on_delete=models.PROTECT, related_name="+")
    task = models.TextField()
    depth = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(
        max_length=16, choices=DelegationStatus.choices, default=DelegationStatus.WAITING
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "status"])]

    def __str__(self):
        return f"Delegation {self.pk} to {self.roster_entry.agent.name}"

    @property
    def is_open(self):
        return self.status in (DelegationStatus.WAITING, DelegationStatus.RUNNING)


class ScheduleKind(models.TextChoices):
    CRON = "cron", "Cron expression"
    INTERVAL = "interval", "Every N minutes"


class OverlapPolicy(models.TextChoices):
    SKIP = "skip", "Skip if the previous run is still active"
    ALLOW = "allow", "Start anyway"


class Schedule(models.Model):
    """Starts a workflow or an agent on a cron expression or an interval, through a
    django-celery-beat PeriodicTask kept in sync by the services."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=120)
    workflow = models.ForeignKey(
        Workflow, null=True, blank=True, on_delete=models.CASCADE, related_name="schedules"
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.CASCADE, related_name="schedules"
    )
    input = models.TextField()
    # An agent's scheduled runs may be graded (and revised) against this rubric.
    rubric = models.ForeignKey(
        "outcomes.Rubric",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="schedules",
    )
    kind = models.CharField(max_length=10, choices=ScheduleKind.choices, default=ScheduleKind.CRON)
    cron = models.CharField(max_length=120, blank=True)
    every_minutes = models.PositiveIntegerField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    enabled = models.BooleanField(default=True)
    overlap = models.CharField(
        max_length=8, choices=OverlapPolicy.choices, default=OverlapPolicy.SKIP
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="agentops_schedule",
    )
    last_fired_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(workflow__isnull=False, agent__isnull=True)
                | models.Q(workflow__isnull=True, agent__isnull=False),
                name="schedule_has_one_target",
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def target(self):
        return self.workflow or self.agent

    @property
    def target_label(self):
        return f"Workflow {self.workflow.name}" if self.workflow_id else f"Agent {self.agent.name}"

    @property
    def when_label(self):
        if self.kind == ScheduleKind.CRON:
            return f"cron {self.cron} ({self.timezone})"
        unit = "minute" if self.every_minutes == 1 else f"{self.every_minutes} minutes"
        return f"every {unit}"


class FireOutcome(models.TextChoices):
    STARTED = "started", "Started a run"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Could not start"


class ScheduleFire(models.Model):
    """One firing of a schedule: the run it started, or why it started none."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    fired_at = models.DateTimeField(auto_now_add=True, db_index=True)
    outcome = models.CharField(max_length=10, choices=FireOutcome.choices)
    run = models.ForeignKey(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-fired_at", "-id"]

    def __str__(self):
        return f"{self.schedule} fired at {self.fired_at:%Y-%m-%d %H:%M}: {self.outcome}"
