from django.urls import path

from . import views

app_name = "memory"

urlpatterns = [
    path("", views.store_list, name="stores"),
    path("new/", views.store_create, name="store-create"),
    path("<int:pk>/", views.store_detail, name="store"),
    path("<int:pk>/edit/", views.store_edit, name="store-edit"),
    path("<int:pk>/memories/new/", views.memory_create, name="create"),
    path("<int:pk>/attachments/add/", views.attachment_add, name="attach"),
    path("<int:pk>/rollback/", views.store_rollback, name="rollback"),
    path("<int:pk>/dream/", views.dream_start, name="dream-start"),
    path("attachments/<int:pk>/edit/", views.attachment_edit, name="attachment-edit"),
    path("attachments/<int:pk>/remove/", views.attachment_remove, name="detach"),
    path("memories/<int:pk>/", views.memory_detail, name="detail"),
    path("memories/<int:pk>/edit/", views.memory_edit, name="edit"),
    path("memories/<int:pk>/retire/", views.memory_retire, name="retire"),
    path("memories/<int:pk>/decide/", views.memory_decide, name="decide"),
    path("dreams/<int:pk>/", views.dream_detail, name="dream"),
    path(
        "dreams/<int:pk>/changes/<int:change_pk>/decide/",
        views.change_decide,
        name="change-decide",
    ),
    path("dreams/<int:pk>/decide-all/", views.dream_decide_all, name="dream-decide-all"),
]
