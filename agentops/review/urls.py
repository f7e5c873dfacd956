from django.urls import path

from . import views

app_name = "review"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("export.csv", views.export_csv, name="export-csv"),
    path("export.jsonl", views.export_jsonl, name="export-jsonl"),
    path("evaluations/<int:pk>/", views.evaluation_detail, name="evaluation"),
    path("evaluations/<int:pk>/review/", views.evaluation_review, name="evaluation-review"),
    path("evaluations/<int:pk>/assign/", views.evaluation_assign, name="evaluation-assign"),
]
