"""Routes of the task API, mounted under /api/ by easyrag/urls.py."""

from django.urls import path

from easyrag.task_app import views

urlpatterns = [
    path("tasks/", views.TaskListView.as_view(), name="task-list"),
    path("tasks/stats/", views.TaskStatsView.as_view(), name="task-stats"),
    path("tasks/<str:task_id>/", views.TaskStatusView.as_view(), name="task-status"),
    path("tasks/<str:task_id>/cancel/", views.TaskCancelView.as_view(), name="task-cancel"),
    path("documents/parse/", views.DocumentParseView.as_view(), name="document-parse"),
]
