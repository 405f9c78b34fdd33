"""Built-in task handlers, one module each; users' own handler modules may live here too.

Handlers only: what they use (TaskHandler, the task_data readers, run_step, Progress) comes from
the facade, ``easyrag.task_app.async_task_framework``.  Workers and the submitting process import
the modules of ``easyrag.config.BUILTIN_HANDLER_MODULES`` by name, then those of
ASYNC_TASK_HANDLER_MODULES; a new built-in handler's module is added to that list.
"""
