"""run_step(): one piece of blocking work off the handler event loop, finished before a cancel unwinds.

Handlers share one event loop per worker process, so file and network work runs in a thread, in
steps, with progress written between them.  A thread cannot be interrupted: when the task is
cancelled or times out mid-step, plain ``asyncio.to_thread`` would let the handler close its files
while the step still uses them.  ``run_step`` waits for the step to end first, then re-raises
CancelledError, so a cancel lands at most one step late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def run_step(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a worker thread; on cancellation, wait for it, then re-raise."""
    step = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
    try:
        return await asyncio.shield(step)
    except asyncio.CancelledError:
        await asyncio.wait({step})
        if not step.cancelled():
            step.exception()  # marks a failure of the step as seen: the cancel is what the task reports
        raise
