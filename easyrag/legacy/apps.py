"""The Django app of the legacy Redis-list consumer: ``python manage.py async_command``."""

from django.apps import AppConfig


class LegacyConfig(AppConfig):
    name = "easyrag.legacy"
    label = "legacy"
    verbose_name = "Legacy list consumer"
