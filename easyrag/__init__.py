"""EasyRAG: the Django project package and the Celery app (``celery -A easyrag worker``)."""

from easyrag.celery import app as celery_app

__all__ = ("celery_app",)
