"""Built-in task handlers, one module each; users' own handler modules may live here too.

Workers and the submitting process import every module listed here, then the modules of
ASYNC_TASK_HANDLER_MODULES.  Each built-in handler's module is added to this list by the issue
that builds it.
"""

BUILTIN_HANDLER_MODULES: tuple[str, ...] = (
    "tasks.document_parse",
    "tasks.email_send",
    "tasks.data_process",
    "tasks.file_upload",
    "tasks.report_generation",
    "tasks.notification",
    "tasks.backup",
)
