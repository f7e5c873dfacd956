"""Runs, their threads and steps. These rows are the truth of every run: Celery only
carries step ids, so a lost worker or broker loses nothing that is recorded here."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    BUDGET_REACHED = "budget_reached", "Budget reached"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL)


class RunTrigger(models.TextChoices):
    BROWSER = "browser", "Browser"
    COMMAND = "command", "Command line"
    RERUN = "rerun", "Rerun"
    SCHEDULE = "schedule", "Schedule"
    DEMO = "demo", "Demo"


# How a stop for the team's monthly budget begins (runs.services.team_budget_stop_reason).
TEAM_BUDGET_REACHED = "Team monthly"


class Run(models.Model):
    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="runs")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="runs")
    # Pinned at start: editing the agent later never changes what a run did.
    agent_version = models.ForeignKey(
        "agents.AgentVersion", on_delete=models.PROTECT, related_name="runs"
    )
    input = models.TextField()
    status = models.CharField(
        max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    trigger = models.CharField(
        max_length=16, choices=RunTrigger.choices, default=RunTrigger.BROWSER
    )
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns"
    )
    # Limits. A null budget means no limit of that kind.
    max_turns = models.PositiveIntegerField(default=20)
    max_continuations = models.PositiveIntegerField(
        default=0, help_text="How many times to continue after the model hits max_tokens."
    )
    budget_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    budget_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # Totals, added to in the same transaction that records each step.
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    model_calls = models.PositiveIntegerField(default=0)
    tool_calls = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    simulated = models.BooleanField(default=False)
    # What the engine's hooks need to know, kept on the row the claim and the checkpoint
    # load anyway, so they need not ask other tables at every step: a workflow's run may
    # delegate (set at its creation); a run with a graded thread (its lead, or a specialist
    # given a rubric when it starts) has evaluations to end with it. A database default too,
    # so code from before them can still create rows while a deploy migrates.
    in_workflow = models.BooleanField(default=False, db_default=False)
    has_graded_threads = models.BooleanField(default=False, db_default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "-created_at"])]

    def __str__(self):
        return f"Run {self.pk} of {self.agent.name}"

    @property
    def is_active(self):
        return self.status in ACTIVE_RUN_STATUSES

    @property
    def is_progressing(self):
        """Active without waiting for a person: the live page polls only then."""
        return self.status in (RunStatus.QUEUED, RunStatus.RUNNING)

    @property
    def total_tokens(self):
        return self.input_tokens + self.output_tokens

    @property
    def stopped_by_team_budget(self):
        return self.status == RunStatus.BUDGET_REACHED and self.error.startswith(
            TEAM_BUDGET_REACHED
        )

    @property
    def budget_overrun(self):
        """What this run spent beyond its own budget, or "". Budgets are checked before each
        model call, so the call that crosses one still completes and is paid for."""
        parts = []
        if self.budget_tokens is not None and self.total_tokens > self.budget_tokens:
            parts.append(f"{self.total_tokens:,} tokens of a {self.budget_tokens:,}-token budget")
        if self.budget_cost_usd is not None and self.cost_usd > self.budget_cost_usd:
            parts.append(f"${self.cost_usd:.4f} of a ${self.budget_cost_usd:.4f} budget")
        if not parts:
            return ""
        return (
            "Went over its budget: " + " and ".join(parts) + ". Budgets are checked before "
            "each model call; the call that crossed it still completed."
        )

    @property
    def duration_s(self):
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def status_tone(self):
        return {
            RunStatus.SUCCEEDED: "ok",
            RunStatus.FAILED: "bad",
            RunStatus.CANCELLED: "",
            RunStatus.BUDGET_REACHED: "warn",
            RunStatus.AWAITING_APPROVAL: "warn",
        }.get(self.status, "")


class ThreadRole(models.TextChoices):
    LEAD = "lead", "Lead"
    WORKER = "worker", "Worker"
    GRADER = "grader", "Grader"


class ThreadStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    WAITING_CHILDREN = "waiting_children", "Waiting for sub-agents"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Thread(models.Model):
    """One conversation with one agent: the lead of a run, or a sub-agent it delegated to."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="threads")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    agent_version = models.ForeignKey(
        "agents.AgentVersion", on_delete=models.PROTECT, related_name="+"
    )
    role = models.CharField(max_length=10, choices=ThreadRole.choices, default=ThreadRole.LEAD)
    # A grader thread's worker: the thread whose output it grades (a run's lead, or a
    # specialist of a workflow whose roster gives it a rubric).
    graded_thread = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="grader_threads"
    )
    # Its answers are graded against a rubric (it has an Evaluation): set in the transaction
    # that creates the thread, so its steps need not ask.
    is_graded = models.BooleanField(default=False, db_default=False)
    status = models.CharField(
        max_length=20, choices=ThreadStatus.choices, default=ThreadStatus.ACTIVE
    )
    # The conversation sent to the model, as Messages API message dicts.
    messages = models.JSONField(default=list)
    turns = models.PositiveIntegerField(default=0)
    continuations = models.PositiveIntegerField(default=0)
    # Tool steps of the current turn still to finish; the last one continues the thread.
    pending_tools = models.PositiveIntegerField(default=0)
    # Sub-agent threads still to finish; the last one continues this (parent) thread.
    pending_children = models.PositiveIntegerField(default=0)
    next_sequence = models.PositiveIntegerField(default=1)
    output = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.get_role_display()} thread {self.pk} of run {self.run_id}"


class StepKind(models.TextChoices):
    MODEL_CALL = "model_call", "Model call"
    TOOL_CALL = "tool_call", "Tool call"


class StepStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class ApprovalDecision(models.TextChoices):
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"


class Step(models.Model):
    """One model call or one tool call. Claimed by a conditional update; never re-run once
    succeeded."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="steps")
    kind = models.CharField(max_length=12, choices=StepKind.choices)
    sequence = models.PositiveIntegerField()
    turn = models.PositiveIntegerField(default=1)
    status = models.CharField(
        max_length=20, choices=StepStatus.choices, default=StepStatus.QUEUED, db_index=True
    )
    # Tool steps: which tool_use block of the model's response this step answers.
    tool_use_id = models.CharField(max_length=120, blank=True)
    tool_name = models.CharField(max_length=120, blank=True)
    request = models.JSONField(default=dict, blank=True)
    response = models.JSONField(default=dict, blank=True)
    stop_reason = models.CharField(max_length=40, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=120, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # Approval of an "always ask" tool call.
    decision = models.CharField(max_length=10, choices=ApprovalDecision.choices, blank=True)
    decision_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision_message = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["thread_id", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["thread", "sequence"], name="unique_step_sequence"),
        ]
        indexes = [models.Index(fields=["status", "deadline"])]

    def __str__(self):
        label = self.tool_name if self.kind == StepKind.TOOL_CALL else "model call"
        return f"Step {self.pk} ({label}) of run {self.run_id}"

    @property
    def is_model_call(self):
        return self.kind == StepKind.MODEL_CALL

    @property
    def total_tokens(self):
        return self.input_tokens + self.output_tokens

    @property
    def retries(self):
        return max(self.attempts - 1, 0)

    @property
    def rate_limit_wait_until(self):
        """When a model call waiting for the team's rate limit goes out (about: the slot may
        move while it waits); None when it is not waiting. A running step's not_before is
        set only by that wait."""
        if (
            self.status == StepStatus.RUNNING
            and self.not_before is not None
            and self.not_before > timezone.now()
        ):
            return self.not_before
        return None


class TeamBudget(models.Model):
    """A team's monthly spending limit across all its runs."""

    team = models.OneToOneField("teams.Team", on_delete=models.CASCADE, related_name="budget")
    monthly_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    monthly_cost_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)

    def __str__(self):
        return f"Monthly budget of {self.team}"

    @property
    def is_set(self):
        """Whether it limits anything (a row with both limits empty does not)."""
        return self.monthly_tokens is not None or self.monthly_cost_usd is not None
