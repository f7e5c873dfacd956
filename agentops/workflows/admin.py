from django.contrib import admin

from .models import (
    Delegation,
    RosterEntry,
    Schedule,
    ScheduleFire,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
)


class RosterEntryInline(admin.TabularInline):
    model = RosterEntry
    extra = 0
    fields = ["position", "agent", "pinned_version", "role_description"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # versions are immutable: they are made by saving the workflow


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "current_version", "archived_at", "updated_at"]
    list_filter = ["team", ("archived_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "slug", "description"]
    readonly_fields = ["current_version", "created_by", "created_at", "updated_at"]


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ["workflow", "number", "lead_agent", "mode", "max_parallel", "created_at"]
    list_filter = ["mode", "workflow__team"]
    search_fields = ["workflow__name", "name", "description"]
    inlines = [RosterEntryInline]

    def has_change_permission(self, request, obj=None):
        return False  # runs pin versions

    def has_add_permission(self, request):
        return False


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = ["run", "workflow", "version"]
    list_filter = ["workflow__team"]
    search_fields = ["workflow__name", "run__input"]
    raw_id_fields = ["run"]


@admin.register(Delegation)
class DelegationAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "roster_entry", "depth", "status", "started_at", "finished_at"]
    list_filter = ["status", "depth"]
    search_fields = ["task", "error", "roster_entry__agent__name"]
    raw_id_fields = ["run", "parent", "child", "step", "roster_entry"]


class ScheduleFireInline(admin.TabularInline):
    model = ScheduleFire
    extra = 0
    fields = ["fired_at", "outcome", "run", "message"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "team",
        "workflow",
        "agent",
        "rubric",
        "kind",
        "enabled",
        "last_fired_at",
    ]
    list_filter = ["team", "kind", "enabled", "overlap"]
    search_fields = ["name", "input", "cron"]
    # Edited in the app so the periodic task stays in sync; here for inspection.
    readonly_fields = ["periodic_task", "last_fired_at", "created_by", "created_at", "updated_at"]
    inlines = [ScheduleFireInline]


@admin.register(ScheduleFire)
class ScheduleFireAdmin(admin.ModelAdmin):
    list_display = ["schedule", "fired_at", "outcome", "run"]
    list_filter = ["outcome", "schedule__team"]
    search_fields = ["schedule__name", "message"]


@admin.register(RosterEntry)
class RosterEntryAdmin(admin.ModelAdmin):
    list_display = ["workflow_version", "position", "agent", "pinned_version"]
    list_filter = ["workflow_version__workflow__team"]
    search_fields = ["agent__name", "role_description", "workflow_version__workflow__name"]

    def has_change_permission(self, request, obj=None):
        return False  # part of an immutable workflow version

    def has_add_permission(self, request):
        return False
