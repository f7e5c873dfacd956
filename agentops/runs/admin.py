from django.contrib import admin

from .models import Run, Step, TeamBudget, Thread


class ThreadInline(admin.TabularInline):
    model = Thread
    extra = 0
    fields = ["role", "status", "turns", "pending_tools", "pending_children"]
    readonly_fields = fields
    show_change_link = True


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "team", "agent", "status", "trigger", "cost_usd", "created_at"]
    list_filter = ["status", "trigger", "team"]
    search_fields = ["input", "output", "error", "agent__name"]
    date_hierarchy = "created_at"
    list_select_related = ["team", "agent"]
    raw_id_fields = ["agent", "agent_version", "rerun_of", "created_by"]
    inlines = [ThreadInline]


@admin.register(Thread)
class ThreadAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "role", "status", "turns"]
    list_filter = ["role", "status"]
    search_fields = ["run__agent__name", "output"]
    raw_id_fields = ["run", "parent", "agent_version"]


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "kind", "tool_name", "status", "attempts", "latency_ms"]
    list_filter = ["kind", "status", "stop_reason"]
    search_fields = ["tool_name", "error", "request_id"]
    raw_id_fields = ["run", "thread", "decision_by"]


@admin.register(TeamBudget)
class TeamBudgetAdmin(admin.ModelAdmin):
    list_display = ["team", "monthly_tokens", "monthly_cost_usd"]
    search_fields = ["team__name"]
    autocomplete_fields = ["team"]
