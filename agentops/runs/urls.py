from django.urls import path

from . import views

app_name = "runs"

urlpatterns = [
    path("", views.run_list, name="list"),
    path("compare/", views.run_compare, name="compare"),
    path("budget/", views.team_budget, name="budget"),
    path("<int:pk>/", views.run_detail, name="detail"),
    path("<int:pk>/cancel/", views.run_cancel, name="cancel"),
    path("<int:pk>/rerun/", views.run_rerun, name="rerun"),
    path("start/<int:agent_pk>/", views.run_start, name="start"),
    path("steps/<int:pk>/approval/", views.step_approval, name="approval"),
]
