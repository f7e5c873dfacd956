from django.contrib import admin

from .models import (
    Dream,
    DreamChange,
    Memory,
    MemoryStore,
    MemoryUse,
    MemoryVersion,
    StoreAttachment,
)


class StoreAttachmentInline(admin.TabularInline):
    model = StoreAttachment
    extra = 0
    autocomplete_fields = ["agent"]


@admin.register(MemoryStore)
class MemoryStoreAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "auto_apply", "dream_every_hours", "last_dream_at"]
    list_filter = ["team", "auto_apply"]
    search_fields = ["name", "slug", "description"]
    readonly_fields = ["last_dream_at", "created_by", "created_at", "updated_at"]
    inlines = [StoreAttachmentInline]


class MemoryVersionInline(admin.TabularInline):
    model = MemoryVersion
    extra = 0
    fields = ["number", "operation", "status", "title", "actor", "actor_label", "created_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False  # versions are added by the memory services, never by hand


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ["title", "store", "status", "updated_at"]
    list_filter = ["status", "store__team", "store"]
    search_fields = ["title", "content"]
    list_select_related = ["store"]
    # Changing a memory here would bypass its version history: edit it in the app.
    readonly_fields = [
        "team",
        "store",
        "title",
        "content",
        "tags",
        "status",
        "provenance",
        "superseded_by",
        "current_version",
        "created_at",
        "updated_at",
    ]
    inlines = [MemoryVersionInline]

    def has_add_permission(self, request):
        return False


@admin.register(MemoryVersion)
class MemoryVersionAdmin(admin.ModelAdmin):
    list_display = ["memory", "number", "operation", "status", "actor", "actor_label", "created_at"]
    list_filter = ["operation", "status", "memory__store__team"]
    search_fields = ["title", "content", "actor_label", "memory__title"]
    list_select_related = ["memory", "actor"]

    def has_change_permission(self, request, obj=None):
        return False  # immutable history

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class DreamChangeInline(admin.TabularInline):
    model = DreamChange
    extra = 0
    fields = ["position", "operation", "title", "status", "decided_by", "decided_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Dream)
class DreamAdmin(admin.ModelAdmin):
    list_display = ["__str__", "store", "status", "trigger", "progress_done", "created_at"]
    list_filter = ["status", "trigger", "team"]
    search_fields = ["store__name", "instructions", "error"]
    readonly_fields = [
        "session_run_ids",
        "chunks",
        "raw_proposals",
        "progress_done",
        "progress_total",
        "attempts",
        "input_tokens",
        "output_tokens",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    inlines = [DreamChangeInline]


@admin.register(DreamChange)
class DreamChangeAdmin(admin.ModelAdmin):
    list_display = ["__str__", "operation", "status", "decided_by", "decided_at"]
    list_filter = ["operation", "status", "dream__team"]
    search_fields = ["title", "content", "rationale"]
    readonly_fields = ["decided_by", "decided_at", "result_memory"]


@admin.register(StoreAttachment)
class StoreAttachmentAdmin(admin.ModelAdmin):
    list_display = ["store", "agent", "mode", "token_budget", "holdout_share", "created_at"]
    list_filter = ["mode", "store__team"]
    search_fields = ["store__name", "agent__name"]
    list_select_related = ["store", "agent"]
    autocomplete_fields = ["agent"]


@admin.register(MemoryUse)
class MemoryUseAdmin(admin.ModelAdmin):
    list_display = ["run", "store", "held_out", "can_propose", "evaluation", "created_at"]
    list_filter = ["held_out", "store__team", "store"]
    search_fields = ["store__name", "text"]
    list_select_related = ["run", "store", "evaluation"]
    readonly_fields = ["run", "thread", "store", "held_out", "can_propose", "memory_ids", "text"]

    def has_add_permission(self, request):
        return False  # recorded by a run's first model call
