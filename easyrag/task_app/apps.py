"""The Django app that holds the task layer."""

from django.apps import AppConfig


class TaskAppConfig(AppConfig):
    name = "easyrag.task_app"
    label = "task_app"
    verbose_name = "Async tasks"
