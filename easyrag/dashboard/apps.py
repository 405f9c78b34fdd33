"""The Django app of the staff dashboard (``/dashboard/``)."""

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "easyrag.dashboard"
    label = "dashboard"
    verbose_name = "Task dashboard"
