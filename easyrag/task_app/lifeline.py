"""The lifeline of a worker started from code: it stops when the process that started it ends.

``start_task_framework()`` runs ``celery -A easyrag worker`` in a session of its own (so ``stop()``
reaches its pool children); ``atexit`` stops it only on a normal exit.  SIGKILL, SIGTERM's default
action and ``os._exit`` end the parent without running any code, and the worker would live on as
an orphan taking tasks.  So the parent keeps the write end of a pipe for its whole life and passes
the read end to the worker; a thread of the worker's main process blocks reading it.  However the
parent ends, the kernel closes the write end and the read returns EOF: the worker sends itself
SIGTERM (Celery's warm shutdown), then SIGQUIT (cold) if it is still alive ``COLD_AFTER_S`` later,
and SIGKILL to its whole process group as a last resort ``KILL_AFTER_S`` after that.

Not ``PR_SET_PDEATHSIG``: it is Linux-only and fires when the parent *thread* that started the
child exits, not the process.  Caveat: a process forked (without exec) from the parent after the
start inherits the write end, so the worker then lives until the last of them ends.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from celery.signals import worker_init

logger = logging.getLogger(__name__)

#: Environment variable naming the worker's read end of the pipe (a file descriptor number).
#: A handshake between the framework and the worker it starts, not a setting: not in easyrag.config.
FD_ENV = "EASYRAG_LIFELINE_FD"
#: Seconds the warm shutdown gets before the worker escalates to a cold one (SIGQUIT).
COLD_AFTER_S = 30.0
#: Seconds the cold shutdown gets before the worker SIGKILLs its own process group.
KILL_AFTER_S = 10.0


def open_lifeline() -> tuple[int, int]:
    """A new pipe: (read end, for the worker via ``Popen(pass_fds=...)``; write end, kept here).

    Both ends are non-inheritable (PEP 446): only the worker gets the read end, through pass_fds.
    """
    return os.pipe()


def worker_env(read_fd: int) -> dict[str, str]:
    """The environment entry that tells the worker which descriptor to watch."""
    return {FD_ENV: str(read_fd)}


@worker_init.connect
def _watch_parent(**_: Any) -> None:
    # Popped, so neither the pool children nor the subprocesses of tasks take it for theirs.
    fd = os.environ.pop(FD_ENV, None)
    if fd:
        threading.Thread(target=_wait_for_parent, args=(int(fd), os.getppid()), name="lifeline",
                         daemon=True).start()


def _wait_for_parent(fd: int, parent_pid: int) -> None:
    try:
        while os.read(fd, 1):  # the parent never writes: this returns b"" (EOF) when it has ended
            pass
    except OSError as error:  # a bad descriptor means no lifeline either: the safe side is to stop
        logger.error("lifeline descriptor %s unreadable (%s)", fd, error)
    logger.warning("the process that started this worker (pid %s) has ended: warm shutdown", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(COLD_AFTER_S)
    logger.warning("still running %g s after its starting process ended: cold shutdown", COLD_AFTER_S)
    os.kill(os.getpid(), signal.SIGQUIT)
    time.sleep(KILL_AFTER_S)
    if os.getpgid(0) == os.getpid():  # its own session (start_new_session): the pool children too
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
