from django.urls import path

from . import views

app_name = "teams"

urlpatterns = [
    path("switch/", views.team_switch, name="switch"),
    path("members/", views.members, name="members"),
    path("members/add/", views.member_add, name="member-add"),
    path("members/<int:pk>/role/", views.member_role, name="member-role"),
    path("members/<int:pk>/remove/", views.member_remove, name="member-remove"),
    path("audit/", views.audit_log, name="audit"),
    path("settings/", views.team_settings, name="settings"),
]
