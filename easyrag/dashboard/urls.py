"""Routes of the staff dashboard, included under ``/dashboard/`` by easyrag/urls.py."""

from django.urls import path

from easyrag.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("data.json", views.overview_data, name="data"),
    path("tasks/<str:task_id>/", views.task_page, name="task"),
    path("tasks/<str:task_id>/data.json", views.task_data, name="task-data"),
    path("tasks/<str:task_id>/cancel/", views.cancel, name="cancel"),
    path("dead-letters/data.json", views.dead_letters_data, name="dead-letters"),
    path("dead-letters/requeue/", views.requeue_letter, name="requeue"),
    path("dead-letters/delete/", views.delete_letter, name="delete"),
    path("assets/<str:name>", views.asset, name="asset"),
]
