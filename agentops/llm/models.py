from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

# Bounds a rate limit must stay within. The upper ends are far above any published tier;
# a value beyond them is a typo, not a contract.
MAX_RPM = 100_000
MAX_ITPM = 100_000_000
MAX_OTPM = 20_000_000


class KeyTestStatus(models.TextChoices):
    UNTESTED = "untested", "Not tested"
    PENDING = "pending", "Testing…"
    OK = "ok", "Works"
    FAILED = "failed", "Failed"


class TeamCredential(models.Model):
    """A team's Anthropic API key (encrypted), and the result of the last key test.

    The key itself is only ever in `encrypted_key` (a Fernet token); pages show `key_last4`.
    """

    team = models.OneToOneField(
        "teams.Team", on_delete=models.CASCADE, related_name="model_credential"
    )
    encrypted_key = models.TextField(blank=True)
    key_last4 = models.CharField(max_length=4, blank=True)
    # A one-way fingerprint of the key: names the shared rate-limit bucket.
    key_fingerprint = models.CharField(max_length=32, blank=True)
    key_updated_at = models.DateTimeField(null=True, blank=True)
    key_updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    test_status = models.CharField(
        max_length=16, choices=KeyTestStatus.choices, default=KeyTestStatus.UNTESTED
    )
    test_kind = models.CharField(max_length=40, blank=True)  # error kind when it failed
    test_message = models.CharField(max_length=300, blank=True)
    tested_at = models.DateTimeField(null=True, blank=True)
    tested_source = models.CharField(max_length=16, blank=True)  # team / environment / simulator
    # Models the Models API listed for the tested credential: [{"id": ..., "name": ...}].
    available_models = models.JSONField(default=list, blank=True)

    def __str__(self):
        return f"Model access of {self.team}"

    @property
    def has_key(self):
        return bool(self.encrypted_key)

    @property
    def masked_key(self):
        return f"…{self.key_last4}" if self.has_key else ""


class RateLimit(models.Model):
    """A team's budget for one model (or, with a blank model, for every other model)."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="rate_limits")
    model = models.CharField(max_length=100, blank=True)
    rpm = models.PositiveIntegerField(
        "requests per minute", validators=[MinValueValidator(1), MaxValueValidator(MAX_RPM)]
    )
    itpm = models.PositiveIntegerField(
        "input tokens per minute", validators=[MinValueValidator(1), MaxValueValidator(MAX_ITPM)]
    )
    otpm = models.PositiveIntegerField(
        "output tokens per minute",
        validators=[MinValueValidator(1), MaxValueValidator(MAX_OTPM)],
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]
        constraints = [
            models.UniqueConstraint(fields=["team", "model"], name="unique_rate_limit_per_model"),
            models.CheckConstraint(
                condition=models.Q(rpm__gte=1, itpm__gte=1, otpm__gte=1),
                name="rate_limit_positive",
            ),
        ]

    def __str__(self):
        return f"{self.model or 'other models'}: {self.rpm} rpm"


class CallStatus(models.TextChoices):
    OK = "ok", "OK"
    ERROR = "error", "Error"


class ModelCallRecord(models.Model):
    """One model call, written after it returns (outside any transaction), for usage pages."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="model_calls")
    model = models.CharField(max_length=100)
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    label = models.CharField(max_length=80, blank=True)  # e.g. "grader", "dream", "key test"
    step_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=8, choices=CallStatus.choices, default=CallStatus.OK)
    error_kind = models.CharField(max_length=40, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveIntegerField(default=0)
    cache_read_input_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    waited_ms = models.PositiveIntegerField(default=0)
    request_id = models.CharField(max_length=120, blank=True)
    simulated = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "-created_at"])]

    def __str__(self):
        return f"{self.model} {self.status} {self.created_at:%Y-%m-%d %H:%M}"
