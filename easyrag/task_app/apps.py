"""The Django app that holds the task layer."""

from django.apps import AppConfig


class TaskAppConfig(AppConfig):
    """The task layer's app; its ready() registers the handlers."""

    name = "easyrag.task_app"
    label = "task_app"
    verbose_name = "Async tasks"

    def ready(self) -> None:
        """Import the handler modules (built-in, then ASYNC_TASK_HANDLER_MODULES) in this process."""
        # The submitting process registers the handlers at start-up, as workers do (celeryconfig
        # imports): task types are known to views and commands before the first submit.
        from easyrag.task_app.task_handlers import load_handler_modules

        load_handler_modules()
