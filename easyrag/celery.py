"""The Celery app, in Django's documented two-file pattern; its settings live in celeryconfig.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "easyrag.settings")

app = Celery("easyrag")
# Loaded lazily on first use of app.conf; celeryconfig reads easyrag.config and exits with one
# line naming the variable when a setting is bad.
app.config_from_object("celeryconfig")

# The guarded base task listens to worker_init, which fires before the worker imports task modules.
import easyrag.task_app.base_task  # noqa: E402, F401
