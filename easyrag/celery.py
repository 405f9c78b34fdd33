"""The Celery app, in Django's documented two-file pattern; its settings live in celeryconfig.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "easyrag.settings")

app = Celery("easyrag")
# Loaded lazily on first use of app.conf; celeryconfig reads easyrag.config and exits with one
# line naming the variable when a setting is bad.
app.config_from_object("celeryconfig")

# Signal receivers and the stats command must be in place before the worker starts: the guarded
# base task, the node registry and a framework worker's lifeline listen to worker_init, sent before
# task modules are imported.
import easyrag.task_app.base_task  # noqa: E402
import easyrag.task_app.interruptions  # noqa: E402
import easyrag.task_app.lifeline  # noqa: E402
import easyrag.task_app.nodes  # noqa: E402
import easyrag.task_app.scheduler  # noqa: E402, F401
