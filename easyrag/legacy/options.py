"""What the command's flags set (ConsumerOptions) and what one run did (ConsumerReport)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConsumerOptions:
    """The command's flags.  Times are in seconds."""

    redis_key: str = "async_tasks"
    #: How long one blocking take waits for an item before looking again (BLMOVE timeout).
    interval: float = 1.0
    #: Stop after taking this many items, dead-lettered ones included; None: never.
    max_tasks: int | None = None
    max_concurrent: int = 5
    #: Names the processing list; a restart under the same name resumes what a crash left.
    consumer_name: str = field(default_factory=socket.gethostname)
    #: After SIGINT/SIGTERM, running items get this long to finish before they are put back.
    grace_period: float = 30.0
    #: Redis may stay unreachable this long while running before the consumer gives up.
    retry_window: float = 20.0

    def __post_init__(self) -> None:
        checks = (
            ("redis_key", bool(self.redis_key), "must not be empty"),
            ("consumer_name", bool(self.consumer_name), "must not be empty"),
            ("interval", self.interval > 0, "must be a positive number of seconds"),
            ("max_tasks", self.max_tasks is None or self.max_tasks > 0, "must be a positive integer"),
            ("max_concurrent", self.max_concurrent > 0, "must be a positive integer"),
            ("grace_period", self.grace_period >= 0, "must be a number of seconds >= 0"),
            ("retry_window", self.retry_window >= 0, "must be a number of seconds >= 0"),
        )
        for name, ok, problem in checks:
            if not ok:
                flag = "--" + name.replace("_", "-")  # the command's flag of this option
                raise ValueError(f"{flag} {problem}, got {getattr(self, name)!r}")


FORWARD_TYPES_ENV = "ASYNC_COMMAND_FORWARD_TYPES"


def parse_forward_types(text: str) -> tuple[str, ...]:
    """``"A, B"`` -> ``("A", "B")``: the task types --forward may submit (--forward-types)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def forward_types_from_env() -> str | None:
    """The text of ASYNC_COMMAND_FORWARD_TYPES, or None when unset.

    Read here rather than in easyrag.config, as ASYNC_COMMAND_HANDLER is in handlers.py: it
    concerns this command only, not the task layer's settings table.
    """
    return os.environ.get(FORWARD_TYPES_ENV)


@dataclass
class ConsumerReport:
    """What one run did."""

    recovered: int = 0  #: items a previous run left in the processing list, moved back at start
    taken: int = 0
    succeeded: int = 0
    failed: int = 0  #: dead-lettered: invalid items and handler failures
    requeued: int = 0  #: put back on the list when the grace period ran out
