"""The Django app that holds the task layer."""

from django.apps import AppConfig


class TaskAppConfig(AppConfig):
    name = "easyrag.task_app"
    label = "task_app"
    verbose_name = "Async tasks"

    def ready(self) -> None:
        # The submitting process registers the handlers at start-up, as workers do (celeryconfig
        # imports): task types are known to views and commands before the first submit.
        from easyrag.task_app.task_handlers import load_handler_modules

        load_handler_modules()
