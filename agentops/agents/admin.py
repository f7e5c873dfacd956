from django.contrib import admin

from .models import Agent, AgentVersion, HostAllowlistEntry, WebhookTool


class AgentVersionInline(admin.TabularInline):
    model = AgentVersion
    fk_name = "agent"
    extra = 0
    fields = ["number", "model", "max_tokens", "created_by", "created_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False  # versions are made by saving the agent, never by hand


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "current_version", "archived_at", "updated_at"]
    list_filter = ["team", ("archived_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "slug", "description"]
    readonly_fields = ["current_version", "created_by", "created_at", "updated_at"]
    list_select_related = ["team", "current_version"]
    inlines = [AgentVersionInline]


@admin.register(AgentVersion)
class AgentVersionAdmin(admin.ModelAdmin):
    list_display = ["agent", "number", "model", "max_tokens", "created_by", "created_at"]
    list_filter = ["model", "agent__team"]
    search_fields = ["agent__name", "system_prompt", "name"]
    list_select_related = ["agent", "created_by"]

    def has_change_permission(self, request, obj=None):
        return False  # a version is immutable: runs pin it

    def has_add_permission(self, request):
        return False


@admin.register(WebhookTool)
class WebhookToolAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "url", "timeout_s", "updated_at"]
    list_filter = ["team"]
    search_fields = ["name", "description", "url"]
    # The encrypted secret is set through the app's form, never shown here.
    exclude = ["secret_encrypted"]
    readonly_fields = ["created_by", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False  # a webhook tool needs a secret, which only the app's form sets


@admin.register(HostAllowlistEntry)
class HostAllowlistEntryAdmin(admin.ModelAdmin):
    list_display = ["host", "team", "allow_private", "note", "created_at"]
    list_filter = ["team", "allow_private"]
    search_fields = ["host", "note"]
    readonly_fields = ["created_by", "created_at"]
