"""run_step(): a cancel waits for the blocking step in flight before CancelledError reaches the handler."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tasks.blocking import run_step


def test_a_cancelled_step_finishes_before_cancelled_error_is_raised():
    release, finished = threading.Event(), []

    def step() -> None:
        release.wait(10)
        finished.append("step")

    async def scenario() -> None:
        running = asyncio.ensure_future(run_step(step))
        await asyncio.sleep(0)  # one loop turn: the step is now in its thread
        running.cancel()
        done, _ = await asyncio.wait({running}, timeout=0.2)
        assert not done and finished == []  # still waiting for the step, not unwound under it
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert finished == ["step"]

    asyncio.run(scenario())


def test_a_step_returns_its_value_and_raises_its_error():
    async def scenario() -> None:
        assert await run_step(divmod, 7, 2) == (3, 1)
        with pytest.raises(ZeroDivisionError):
            await run_step(divmod, 1, 0)

    asyncio.run(scenario())
