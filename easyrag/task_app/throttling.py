"""The REST API's live-task limit: a non-staff user holds at most ASYNC_TASK_API_USER_LIMIT places.

A place is a member of ``P:api_live:{user_id}`` (a sorted set, scored by the time it was taken):
``reserve:<token>`` while a submission is under way, then the id of the task it became.  A task
id stops counting once its guard says the task finished (or the guard expired); a reservation
stops counting after ``RESERVATION_TTL_S`` (its request died between the two steps).

Why the bound is exact across processes without a lock or Lua: every request adds its reservation
*before* it counts, in one MULTI, and a reservation becomes its task id in one MULTI, so the set
never dips.  Of any requests that succeed together, the last to count saw all the others::

    A: ZADD reserve:a, ZRANGE -> [.. reserve:a]            count <= limit: submit
    B: ZADD reserve:b, ZRANGE -> [.. reserve:a, reserve:b] B counts A's place as well
    A: ZREM reserve:a + ZADD <task id>                      the place stays taken

Two requests racing for the last place may both be refused (each sees the other's reservation);
neither is ever let through past the limit.  Tasks submitted from Python do not take places.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from rest_framework.exceptions import Throttled

from easyrag.common.redis_utils import get_redis_instance
from easyrag.config import get_config
from easyrag.task_app import keys

#: Seconds a reservation counts without becoming a task id: far longer than one submission takes.
RESERVATION_TTL_S = 60
#: Seconds a refused client is asked to wait (Retry-After of the 429).
RETRY_AFTER_S = 5
#: Guard states of a task that is pending or running (RETRYING: waiting for its next attempt).
LIVE_STATES = frozenset({"PENDING", "RUNNING", "RETRYING"})
RESERVATION = "reserve:"


class LiveTaskPlace:
    """One place of a user's allowance: ``confirm`` it with the new task's id, or ``release`` it."""

    def __init__(self, key: str | None = None, member: str | None = None) -> None:
        self.key, self.member = key, member

    def confirm(self, task_id: str) -> None:
        """The reservation becomes the task's id, in one MULTI (one round trip)."""
        if self.key is None:
            return
        pipe = get_redis_instance().pipeline(transaction=True)
        pipe.zrem(self.key, self.member)
        pipe.zadd(self.key, {task_id: time.time()})
        pipe.expire(self.key, get_config().result_ttl)
        pipe.execute()
        self.key = None

    def release(self) -> None:
        """Give the place back: nothing was submitted (one round trip)."""
        if self.key is not None:
            get_redis_instance().zrem(self.key, self.member)
            self.key = None


def reserve_place(user: Any) -> LiveTaskPlace:
    """Take a place for one submission by ``user``; staff, and a limit of 0, take none.

    Raises DRF's ``Throttled`` (429 with Retry-After) when the user's live tasks and reservations
    already fill ASYNC_TASK_API_USER_LIMIT.  Round trips: 2, plus 1 to drop finished entries.
    """
    limit = get_config().api_user_limit
    if user.is_staff or limit == 0:
        return LiveTaskPlace()
    client = get_redis_instance()
    key = keys.api_live_key(user.pk)
    member, now = f"{RESERVATION}{uuid.uuid4().hex}", time.time()
    pipe = client.pipeline(transaction=True)
    pipe.zadd(key, {member: now})
    pipe.expire(key, get_config().result_ttl)
    pipe.zrange(key, 0, -1, withscores=True)
    entries = pipe.execute()[-1]
    task_ids = [name for name, _ in entries if not name.startswith(RESERVATION)]
    pipe = client.pipeline(transaction=False)
    for task_id in task_ids:
        pipe.hget(keys.guard_key(task_id), "state")
    states = dict(zip(task_ids, pipe.execute(), strict=True))
    gone = [name for name, score in entries
            if (states.get(name) not in LIVE_STATES if name in states else now - score > RESERVATION_TTL_S)]
    if gone:
        client.zrem(key, *gone)
    if len(entries) - len(gone) > limit:
        client.zrem(key, member)
        raise Throttled(wait=RETRY_AFTER_S, detail=(
            f"you have {limit} tasks pending or running, the most ASYNC_TASK_API_USER_LIMIT allows; "
            f"try again when one has finished"))
    return LiveTaskPlace(key, member)
