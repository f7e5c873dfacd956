from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from agentops.teams import views as team_views

urlpatterns = [
    path("", team_views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("team/", include("agentops.teams.urls")),
    path("agents/", include("agentops.agents.urls")),
    path("runs/", include("agentops.runs.urls")),
    path("workflows/", include("agentops.workflows.urls")),
    path("", include("agentops.llm.urls")),
    path("rubrics/", include("agentops.outcomes.urls")),
    path("review/", include("agentops.review.urls")),
    path("memory/", include("agentops.memory.urls")),
    path("admin/", admin.site.urls),
    path("healthz", team_views.healthz, name="healthz"),
]
