from django.urls import path

from . import views

app_name = "llm"

urlpatterns = [
    path("usage/", views.usage, name="usage"),
    path("settings/model/", views.model_settings, name="settings"),
    path("settings/model/key/", views.key_save, name="key-save"),
    path("settings/model/key/remove/", views.key_remove, name="key-remove"),
    path("settings/model/key/test/", views.key_test, name="key-test"),
    path("settings/model/key/status/", views.key_status, name="key-status"),
    path("settings/model/limits/add/", views.limit_add, name="limit-add"),
    path("settings/model/limits/<int:pk>/", views.limit_edit, name="limit-edit"),
    path("settings/model/limits/<int:pk>/delete/", views.limit_delete, name="limit-delete"),
]
