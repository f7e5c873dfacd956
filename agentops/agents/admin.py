from django.contrib import admin

from .models import Agent, AgentVersion


class AgentVersionInline(admin.TabularInline):
    model = AgentVersion
    extra = 0
    fields = ["number", "model", "max_tokens", "created_by", "created_at"]
    readonly_fields = fields
    can_delete = False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "current_version", "archived_at", "updated_at"]
    list_filter = ["team", "archived_at"]
    search_fields = ["name", "slug", "description"]
    inlines = [AgentVersionInline]


@admin.register(AgentVersion)
class AgentVersionAdmin(admin.ModelAdmin):
    list_display = ["agent", "number", "model", "created_at"]
    list_filter = ["model", "agent__team"]
    search_fields = ["agent__name", "system_prompt"]
