from django.urls import path

from . import views

app_name = "agents"

urlpatterns = [
    path("", views.agent_list, name="list"),
    path("new/", views.agent_create, name="create"),
    path("<int:pk>/", views.agent_detail, name="detail"),
    path("<int:pk>/edit/", views.agent_edit, name="edit"),
    path("<int:pk>/versions/<int:number>/", views.agent_version, name="version"),
    path("<int:pk>/archive/", views.agent_archive, name="archive"),
    path("<int:pk>/unarchive/", views.agent_unarchive, name="unarchive"),
    path("tools/", views.tools, name="tools"),
    path("tools/webhooks/new/", views.webhook_create, name="webhook-create"),
    path("tools/webhooks/<int:pk>/edit/", views.webhook_edit, name="webhook-edit"),
    path("tools/webhooks/<int:pk>/delete/", views.webhook_delete, name="webhook-delete"),
    path("tools/allowlist/add/", views.allowlist_add, name="allowlist-add"),
    path("tools/allowlist/<int:pk>/remove/", views.allowlist_remove, name="allowlist-remove"),
]
