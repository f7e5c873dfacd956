from django.urls import path

from . import views

app_name = "workflows"

urlpatterns = [
    path("", views.workflow_list, name="list"),
    path("new/", views.workflow_create, name="create"),
    path("<int:pk>/", views.workflow_detail, name="detail"),
    path("<int:pk>/edit/", views.workflow_edit, name="edit"),
    path("<int:pk>/versions/<int:number>/", views.workflow_version, name="version"),
    path("<int:pk>/archive/", views.workflow_archive, name="archive"),
    path("<int:pk>/unarchive/", views.workflow_unarchive, name="unarchive"),
    path("<int:pk>/run/", views.workflow_run_start, name="run-start"),
    path("runs/<int:pk>/", views.run_tree, name="run"),
    path("runs/<int:pk>/threads/<int:thread_pk>/", views.thread_detail, name="thread"),
    path(
        "runs/<int:pk>/threads/<int:thread_pk>/cancel/",
        views.thread_cancel,
        name="thread-cancel",
    ),
    path("schedules/", views.schedule_list, name="schedules"),
    path("schedules/new/", views.schedule_create, name="schedule-create"),
    path("schedules/<int:pk>/", views.schedule_detail, name="schedule"),
    path("schedules/<int:pk>/edit/", views.schedule_edit, name="schedule-edit"),
    path("schedules/<int:pk>/pause/", views.schedule_pause, name="schedule-pause"),
    path("schedules/<int:pk>/resume/", views.schedule_resume, name="schedule-resume"),
    path("schedules/<int:pk>/delete/", views.schedule_delete, name="schedule-delete"),
]
