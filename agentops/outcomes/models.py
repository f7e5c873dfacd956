"""Rubrics (immutable versions with weighted criteria), evaluations of outputs against them,
every iteration of the outcome loop, and human reviews that never overwrite the grader."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


def validate_positive(value):
    if value is None or value <= 0:
        raise ValidationError("Must be greater than 0.")


def validate_threshold(value):
    # The pass threshold is a fraction of the weighted maximum: 0 < threshold <= 1.
    if value is None or not Decimal("0") < value <= Decimal("1"):
        raise ValidationError(
            "The pass threshold is a fraction of the weighted maximum: above 0 and at most 1."
        )


class Verdict(models.TextChoices):
    SATISFIED = "satisfied", "Satisfied"
    NEEDS_REVISION = "needs_revision", "Needs revision"
    MAX_ITERATIONS_REACHED = "max_iterations_reached", "Max iterations reached"
    FAILED = "failed", "Rubric does not apply"
    INTERRUPTED = "interrupted", "Interrupted"
    GRADER_ERROR = "grader_error", "Grader error"


# The final verdicts that come from a grade: a human can agree with them or override them,
# and calibration compares them. Interrupted and grader_error carry no grade.
GRADE_VERDICTS = (Verdict.SATISFIED, Verdict.MAX_ITERATIONS_REACHED, Verdict.FAILED)
GRADE_VERDICT_CHOICES = [(v.value, v.label) for v in GRADE_VERDICTS]

# What one graded output is expected to get, for golden examples.
EXPECTED_VERDICT_CHOICES = [
    (Verdict.SATISFIED.value, Verdict.SATISFIED.label),
    (Verdict.NEEDS_REVISION.value, "Below the bar"),
    (Verdict.FAILED.value, Verdict.FAILED.label),
]

VERDICT_TONE = {
    Verdict.SATISFIED: "ok",
    Verdict.NEEDS_REVISION: "warn",
    Verdict.MAX_ITERATIONS_REACHED: "bad",
    Verdict.FAILED: "bad",
    Verdict.GRADER_ERROR: "warn",
    Verdict.INTERRUPTED: "",
}


class EvaluationStatus(models.TextChoices):
    RUNNING = "running", "Running"
    # Finished, but the grader's verdict only counts after a human review: the rubric asks
    # for a minimum kappa that the grader has not (yet) shown on this rubric version.
    PENDING_REVIEW = "pending_review", "Pending review"
    FINISHED = "finished", "Finished"


class RubricQuerySet(models.QuerySet):
    def gradable(self, team):
        """The rubrics `team`'s runs and threads may be graded by: not archived, saved."""
        return self.filter(
            team=team, archived_at__isnull=True, current_version__isnull=False
        ).order_by("name")


class Rubric(models.Model):
    """A named rubric of a team. What it grades by lives in immutable RubricVersion rows."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="rubrics")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80)
    description = models.TextField(blank=True)
    current_version = models.ForeignKey(
        "RubricVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    archived_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RubricQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "slug"], name="unique_rubric_slug_per_team"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_archived(self):
        return self.archived_at is not None


class RubricVersion(models.Model):
    """One saved state of a rubric. Never edited: a save adds a new version, and evaluations
    pin the version they were graded with."""

    rubric = models.ForeignKey(Rubric, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    pass_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.8"),
        validators=[validate_threshold],
        help_text="Fraction of the weighted maximum an output needs to pass, e.g. 0.8.",
    )
    grader_model = models.CharField(max_length=100, default="claude-haiku-4-5")
    grader_instructions = models.TextField(
        blank=True, help_text="Added to the grader's system prompt."
    )
    max_iterations = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Worker outputs graded at most (1 to 20), revisions included.",
    )
    min_kappa = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="If set, verdicts wait for a human review until the grader's Cohen's kappa "
        "on this version reaches it (0 to 1).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["rubric", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["rubric", "number"], name="unique_rubric_version"),
        ]

    def __str__(self):
        return f"{self.name} v{self.number}"

    @property
    def team(self):
        return self.rubric.team

    @property
    def pass_percent(self):
        return int(self.pass_threshold * 100)


class Criterion(models.Model):
    version = models.ForeignKey(RubricVersion, on_delete=models.CASCADE, related_name="criteria")
    position = models.PositiveSmallIntegerField(default=0)
    # The criterion's name in the grader's tool schema: a slug of the name.
    key = models.SlugField(max_length=80)
    name = models.CharField(max_length=120)
    guidance = models.TextField("What good looks like")
    weight = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("1"), validators=[validate_positive]
    )
    scale_max = models.PositiveSmallIntegerField(
        "Scale",
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="1 for pass/fail; N for a score from 0 to N.",
    )
    minimum = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Optional: an output scoring below this on this criterion never passes.",
    )

    class Meta:
        ordering = ["version", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["version", "key"], name="unique_criterion_key"),
        ]
        verbose_name_plural = "criteria"

    def __str__(self):
        return self.name

    def clean(self):
        if self.minimum is not None and self.scale_max and self.minimum > self.scale_max:
            raise ValidationError(
                {"minimum": f"The minimum must be within the scale (0 to {self.scale_max})."}
            )

    @property
    def is_pass_fail(self):
        return self.scale_max == 1

    @property
    def scale_label(self):
        return "pass/fail" if self.is_pass_fail else f"0–{self.scale_max}"


class GoldenExample(models.Model):
    """An output with the verdict a trustworthy grader should give it."""

    version = models.ForeignKey(
        RubricVersion, on_delete=models.CASCADE, related_name="golden_examples"
    )
    position = models.PositiveSmallIntegerField(default=0)
    output = models.TextField()
    expected_verdict = models.CharField(max_length=24, choices=EXPECTED_VERDICT_CHOICES)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["version", "position", "id"]

    def __str__(self):
        return f"Golden example {self.position + 1} of {self.version}"


class Evaluation(models.Model):
    """One output graded against one pinned rubric version, over one or more iterations."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="evaluations")
    rubric_version = models.ForeignKey(
        RubricVersion, on_delete=models.PROTECT, related_name="evaluations"
    )
    task = models.TextField()
    # The run whose final output this grades, when the outcome loop runs inside the run engine.
    run = models.OneToOneField(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="evaluation"
    )
    # The thread whose output this grades: the run's lead thread, or a workflow specialist's
    # thread (then `run` is empty: a run's evaluation is the one of its final output).
    thread = models.OneToOneField(
        "runs.Thread",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="evaluation",
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    agent_version = models.ForeignKey(
        "agents.AgentVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=20,
        choices=EvaluationStatus.choices,
        default=EvaluationStatus.RUNNING,
        db_index=True,
    )
    verdict = models.CharField(max_length=24, choices=Verdict.choices, blank=True, db_index=True)
    weighted_score = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    iterations_count = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_evaluations",
    )
    # The latest human review, kept here so the queue can filter without a subquery.
    human_verdict = models.CharField(max_length=24, choices=GRADE_VERDICT_CHOICES, blank=True)
    human_agreed = models.BooleanField(null=True, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team", "-created_at"]),
            models.Index(fields=["team", "status"]),
        ]

    def __str__(self):
        return f"Evaluation {self.pk} ({self.rubric_version})"

    @property
    def is_running(self):
        return self.status == EvaluationStatus.RUNNING

    @property
    def is_reviewed(self):
        return self.reviewed_at is not None

    @property
    def is_reviewable(self):
        return self.status != EvaluationStatus.RUNNING and self.verdict in GRADE_VERDICTS

    @property
    def effective_verdict(self):
        """The verdict that counts: the latest human's, else the grader's once trusted."""
        if self.human_verdict:
            return self.human_verdict
        if self.status == EvaluationStatus.FINISHED:
            return self.verdict
        return ""

    def get_effective_verdict_display(self):
        verdict = self.effective_verdict
        return Verdict(verdict).label if verdict else ""

    @property
    def verdict_tone(self):
        return VERDICT_TONE.get(self.verdict, "")

    def get_human_verdict_tone(self):
        return VERDICT_TONE.get(self.human_verdict, "")


class Iteration(models.Model):
    """One worker output and the grader's answer to it. Every iteration is kept."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="iterations")
    number = models.PositiveSmallIntegerField()
    output = models.TextField()
    worker_input_tokens = models.PositiveIntegerField(default=0)
    worker_output_tokens = models.PositiveIntegerField(default=0)
    worker_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    grader_input_tokens = models.PositiveIntegerField(default=0)
    grader_output_tokens = models.PositiveIntegerField(default=0)
    grader_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    grader_attempts = models.PositiveSmallIntegerField(default=0)
    grader_error = models.TextField(blank=True)
    applies = models.BooleanField(null=True, blank=True)
    feedback = models.TextField(blank=True)
    weighted_score = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    verdict = models.CharField(max_length=24, choices=Verdict.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["evaluation", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["evaluation", "number"], name="unique_iteration_number"
            ),
        ]

    def __str__(self):
        return f"Iteration {self.number} of evaluation {self.evaluation_id}"

    @property
    def cost_usd(self):
        return self.worker_cost_usd + self.grader_cost_usd

    @property
    def verdict_tone(self):
        return VERDICT_TONE.get(self.verdict, "")


class CriterionScore(models.Model):
    """The grader's score for one criterion in one iteration. Never changed by a review."""

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="scores")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="+")
    score = models.PositiveSmallIntegerField()
    rationale = models.TextField(blank=True)

    class Meta:
        ordering = ["iteration", "criterion__position", "criterion_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["iteration", "criterion"], name="unique_criterion_score"
            ),
        ]

    def __str__(self):
        return f"{self.criterion.name}: {self.score}"


class HumanReview(models.Model):
    """A reviewer's judgement of an evaluation's final output. Append-only: a second review
    adds a row, and the grader's own rows are never touched."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    agreed = models.BooleanField()
    verdict = models.CharField(max_length=24, choices=GRADE_VERDICT_CHOICES)
    grader_verdict = models.CharField(max_length=24, choices=Verdict.choices)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Review of evaluation {self.evaluation_id} by {self.reviewer}"

    @property
    def verdict_overridden(self):
        return self.verdict != self.grader_verdict


class HumanCriterionScore(models.Model):
    """A reviewer's score for a criterion where it differs from the grader's."""

    review = models.ForeignKey(HumanReview, on_delete=models.CASCADE, related_name="overrides")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="+")
    score = models.PositiveSmallIntegerField()
    grader_score = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["review", "criterion__position", "criterion_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["review", "criterion"], name="unique_human_criterion_score"
            ),
        ]

    def __str__(self):
        return f"{self.criterion.name}: {self.grader_score} → {self.score}"
