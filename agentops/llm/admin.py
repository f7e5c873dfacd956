from django.contrib import admin

from .models import ModelCallRecord, RateLimit, TeamCredential


@admin.register(TeamCredential)
class TeamCredentialAdmin(admin.ModelAdmin):
    list_display = ["team", "masked_key", "test_status", "tested_at", "key_updated_at"]
    list_filter = ["test_status"]
    search_fields = ["team__name", "key_last4"]
    # The encrypted key is never shown or edited here; keys are managed in the team's
    # settings page so every change is audited.
    exclude = ["encrypted_key", "key_fingerprint"]
    readonly_fields = [
        "team",
        "key_last4",
        "key_updated_at",
        "key_updated_by",
        "test_status",
        "test_kind",
        "test_message",
        "tested_at",
        "tested_source",
        "available_models",
    ]

    def has_add_permission(self, request):
        return False


@admin.register(RateLimit)
class RateLimitAdmin(admin.ModelAdmin):
    list_display = ["team", "model", "rpm", "itpm", "otpm", "updated_at"]
    list_filter = ["team"]
    search_fields = ["team__name", "model"]


@admin.register(ModelCallRecord)
class ModelCallRecordAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "team",
        "model",
        "label",
        "status",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
    ]
    list_filter = ["status", "simulated", "model", "team"]
    search_fields = ["model", "label", "request_id", "step_id", "error_kind"]
    date_hierarchy = "created_at"
    list_select_related = ["team"]
