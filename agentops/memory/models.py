"""Memory stores, their memories with an immutable version history, and the dreams that
propose changes to them."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from agentops.llm.catalogue import DEFAULT_MODEL


class MemoryStore(models.Model):
    """A team's curated memories, attached to agents that read (and perhaps propose) them."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="memory_stores")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80)
    description = models.TextField(blank=True)
    instructions = models.TextField(
        blank=True,
        help_text="How agents should use these memories; given to them with the memories.",
    )
    auto_apply = models.BooleanField(
        default=False,
        help_text="Apply a dream's proposed changes at once instead of waiting for review.",
    )
    dream_every_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Start a dream on a schedule, this many hours after the last one. "
        "Empty: only on demand.",
    )
    dream_model = models.CharField(
        max_length=100, default=DEFAULT_MODEL, help_text="The model scheduled dreams use."
    )
    last_dream_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "slug"], name="unique_memory_store_slug"),
        ]

    def __str__(self):
        return self.name


class AttachmentMode(models.TextChoices):
    READ_ONLY = "read_only", "Read only"
    READ_WRITE = "read_write", "Read and propose"


class StoreAttachment(models.Model):
    """An agent reads a store's active memories; read-write also lets it propose new ones."""

    store = models.ForeignKey(MemoryStore, on_delete=models.CASCADE, related_name="attachments")
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="memory_attachments"
    )
    mode = models.CharField(
        max_length=12, choices=AttachmentMode.choices, default=AttachmentMode.READ_ONLY
    )
    token_budget = models.PositiveIntegerField(
        default=800, help_text="At most this many tokens of memories go into the system prompt."
    )
    holdout_share = models.FloatField(
        default=0.0,
        help_text="Share of runs (0 to 0.9) that run without this store's memories, so their "
        "outcomes can be compared.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["store", "agent__name"]
        constraints = [
            models.UniqueConstraint(fields=["store", "agent"], name="unique_store_attachment"),
            models.CheckConstraint(
                condition=Q(token_budget__gt=0), name="attachment_token_budget_positive"
            ),
            models.CheckConstraint(
                condition=Q(holdout_share__gte=0) & Q(holdout_share__lte=0.9),
                name="attachment_holdout_share_range",
            ),
        ]

    def __str__(self):
        return f"{self.store} → {self.agent} ({self.get_mode_display()})"

    @property
    def can_propose(self):
        return self.mode == AttachmentMode.READ_WRITE


class MemoryStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    ACTIVE = "active", "Active"
    REJECTED = "rejected", "Rejected"
    SUPERSEDED = "superseded", "Superseded"
    RETIRED = "retired", "Retired"


class Memory(models.Model):
    """One curated memory. Its fields mirror its current version; every change adds one."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="memories")
    store = models.ForeignKey(MemoryStore, on_delete=models.CASCADE, related_name="memories")
    title = models.CharField(max_length=200)
    content = models.TextField(help_text="Markdown.")
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=12, choices=MemoryStatus.choices, default=MemoryStatus.ACTIVE, db_index=True
    )
    # {"run_ids": [...], "step_ids": [...], "evaluation_ids": [...]}
    provenance = models.JSONField(default=dict, blank=True)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="supersedes"
    )
    current_version = models.ForeignKey(
        "MemoryVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        verbose_name_plural = "memories"
        indexes = [models.Index(fields=["store", "status"])]

    def __str__(self):
        return self.title

    @property
    def is_active(self):
        return self.status == MemoryStatus.ACTIVE

    @property
    def status_tone(self):
        return {
            MemoryStatus.ACTIVE: "ok",
            MemoryStatus.PROPOSED: "warn",
            MemoryStatus.REJECTED: "bad",
        }.get(self.status, "")

    def state(self):
        """The versioned fields, as a version records them."""
        return {
            "title": self.title,
            "content": self.content,
            "tags": list(self.tags or []),
            "status": self.status,
        }


class VersionOperation(models.TextChoices):
    CREATE = "create", "Create"
    EDIT = "edit", "Edit"
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    MERGE = "merge", "Merge"
    SUPERSEDE = "supersede", "Supersede"
    RETIRE = "retire", "Retire"
    RESTORE = "restore", "Restore"
    ROLLBACK = "rollback", "Rollback"


class MemoryVersion(models.Model):
    """One state of a memory and the change that produced it. Never edited or deleted."""

    memory = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    content = models.TextField()
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=12, choices=MemoryStatus.choices)
    operation = models.CharField(max_length=12, choices=VersionOperation.choices)
    # A member, or (when no person made the change) its source: "dream #4", "run #17".
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=120, blank=True)
    provenance = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    dream_change = models.ForeignKey(
        "DreamChange", null=True, blank=True, on_delete=models.SET_NULL, related_name="versions"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["memory", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["memory", "number"], name="unique_memory_version"),
        ]

    def __str__(self):
        return f"{self.memory} v{self.number} ({self.operation})"

    @property
    def actor_name(self):
        names = [self.actor.get_username()] if self.actor_id else []
        if self.actor_label:
            names.append(self.actor_label)
        return " for ".join(names) if len(names) == 2 else (names[0] if names else "system")

    def state(self):
        return {
            "title": self.title,
            "content": self.content,
            "tags": list(self.tags or []),
            "status": self.status,
        }


class DreamStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


ACTIVE_DREAM_STATUSES = (DreamStatus.QUEUED, DreamStatus.RUNNING)


class DreamTrigger(models.TextChoices):
    BROWSER = "browser", "Browser"
    COMMAND = "command", "Command line"
    SCHEDULE = "schedule", "Schedule"
    DEMO = "demo", "Demo"


class Dream(models.Model):
    """A review of past sessions that proposes a changeset to one store."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="dreams")
    store = models.ForeignKey(MemoryStore, on_delete=models.CASCADE, related_name="dreams")
    status = models.CharField(
        max_length=12, choices=DreamStatus.choices, default=DreamStatus.QUEUED, db_index=True
    )
    trigger = models.CharField(
        max_length=12, choices=DreamTrigger.choices, default=DreamTrigger.BROWSER
    )
    # Which sessions: none chosen means every run of the attached agents since the last dream.
    agents = models.ManyToManyField("agents.Agent", blank=True, related_name="+")
    since = models.DateField(null=True, blank=True)
    until = models.DateField(null=True, blank=True)
    verdict = models.CharField(max_length=40, blank=True)
    instructions = models.TextField(blank=True)
    model = models.CharField(max_length=100)
    # Fixed when the dream starts working, so a retry reads exactly the same sessions.
    session_run_ids = models.JSONField(default=list, blank=True)
    chunks = models.JSONField(default=list, blank=True)  # [[run ids of chunk 1], ...]
    sessions_before = models.DateTimeField(null=True, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    # What the model proposed, chunk by chunk, before deduplication into DreamChange rows.
    raw_proposals = models.JSONField(default=list, blank=True)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    simulated = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Touched after every chunk: a running dream whose heartbeat stops lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Two dreams working on one store at once would propose overlapping changes.
            models.UniqueConstraint(
                fields=["store"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_dream_per_store",
            ),
        ]

    def __str__(self):
        return self.label

    @property
    def label(self):
        return f"dream #{self.pk}"

    @property
    def is_active(self):
        return self.status in ACTIVE_DREAM_STATUSES

    @property
    def progress_percent(self):
        if not self.progress_total:
            return 0
        return round(100 * self.progress_done / self.progress_total)

    @property
    def status_tone(self):
        return {DreamStatus.SUCCEEDED: "ok", DreamStatus.FAILED: "bad"}.get(self.status, "warn")


class ChangeOperation(models.TextChoices):
    ADD = "add", "Add"
    UPDATE = "update", "Update"
    MERGE = "merge", "Merge"
    SUPERSEDE = "supersede", "Supersede"
    RETIRE = "retire", "Retire"


class ChangeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class DreamChange(models.Model):
    """One proposed change of a dream's changeset, with its rationale and evidence."""

    dream = models.ForeignKey(Dream, on_delete=models.CASCADE, related_name="changes")
    position = models.PositiveIntegerField(default=0)
    operation = models.CharField(max_length=12, choices=ChangeOperation.choices)
    targets = models.ManyToManyField(Memory, blank=True, related_name="dream_changes")
    # The targets as they were when the change was proposed: [{id, title, content, tags,
    # status, version}], the "before" side of the diff.
    before = models.JSONField(default=list, blank=True)
    title = models.CharField(max_length=200, blank=True)
    content = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    rationale = models.TextField(blank=True)
    # [{"run_id": 3, "step_id": null, "evaluation_id": null, "quote": "..."}]
    evidence = models.JSONField(default=list, blank=True)
    # Set when the dream turned a proposed new memory into a merge with a near-duplicate.
    similarity = models.FloatField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=ChangeStatus.choices, default=ChangeStatus.PENDING, db_index=True
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    result_memory = models.ForeignKey(
        Memory, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["dream", "position", "id"]

    def __str__(self):
        return f"{self.get_operation_display()} “{self.title or self.pk}” ({self.dream})"

    @property
    def is_pending(self):
        return self.status == ChangeStatus.PENDING

    @property
    def display_title(self):
        titles = [entry.get("title", "") for entry in self.before or []]
        return self.title or ", ".join(titles) or f"change {self.pk}"

    @property
    def status_tone(self):
        return {ChangeStatus.APPROVED: "ok", ChangeStatus.REJECTED: "bad"}.get(self.status, "warn")

    def provenance(self):
        """The run, step and evaluation ids its evidence cites."""
        return provenance_of(self.evidence)


def provenance_of(evidence):
    ids = {"run_ids": set(), "step_ids": set(), "evaluation_ids": set()}
    for item in evidence or []:
        for key, bucket in (("run_id", "run_ids"), ("step_id", "step_ids")):
            if isinstance(item.get(key), int):
                ids[bucket].add(item[key])
        if isinstance(item.get("evaluation_id"), int):
            ids["evaluation_ids"].add(item["evaluation_id"])
    return {key: sorted(values) for key, values in ids.items()}


def merge_provenance(*items):
    merged = {"run_ids": set(), "step_ids": set(), "evaluation_ids": set()}
    for item in items:
        for key in merged:
            merged[key].update(v for v in (item or {}).get(key, []) if isinstance(v, int))
    return {key: sorted(values) for key, values in merged.items()}


class MemoryUse(models.Model):
    """What one thread of a run was given from one attached store: the memories chosen for
    its system prompt, or nothing because the run was held out for comparison. Chosen once,
    at the thread's first model call, and reused for every later call of the thread."""

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="memory_uses")
    thread = models.ForeignKey("runs.Thread", on_delete=models.CASCADE, related_name="+")
    store = models.ForeignKey(MemoryStore, on_delete=models.CASCADE, related_name="uses")
    held_out = models.BooleanField(default=False)
    can_propose = models.BooleanField(default=False)
    memory_ids = models.JSONField(default=list, blank=True)
    text = models.TextField(blank=True)
    # The graded evaluation of this run's output, when the outcome loop graded it: what the
    # store page's efficacy figures compare.
    evaluation = models.ForeignKey(
        "outcomes.Evaluation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "store__name"]
        constraints = [
            models.UniqueConstraint(fields=["thread", "store"], name="unique_memory_use"),
        ]

    def __str__(self):
        return f"Run {self.run_id} · {self.store}" + (" (held out)" if self.held_out else "")
