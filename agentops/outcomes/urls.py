from django.urls import path

from . import views

app_name = "rubrics"

urlpatterns = [
    path("", views.rubric_list, name="list"),
    path("new/", views.rubric_create, name="create"),
    path("<int:pk>/", views.rubric_detail, name="detail"),
    path("<int:pk>/edit/", views.rubric_edit, name="edit"),
    path("<int:pk>/archive/", views.rubric_archive, name="archive"),
    path("<int:pk>/versions/<int:number>/", views.rubric_version, name="version"),
]
