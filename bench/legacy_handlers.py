"""Handlers for bench/async_command_bench.py (``--handler bench.legacy_handlers.<name>``)."""

from __future__ import annotations

import asyncio
from typing import Any


async def sleep(data: dict[str, Any]) -> None:
    """Wait ``data["data"]["seconds"]`` (an I/O-bound task of known duration)."""
    await asyncio.sleep(data["data"]["seconds"])


async def noop(data: dict[str, Any]) -> None:
    """Nothing: what is left is the consumer's own cost per item."""
