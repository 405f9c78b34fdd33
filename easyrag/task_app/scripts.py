"""Our Lua: each state change of a guarded task is one script, so one round trip.

The scripts span the lock and the record (and kombu's unacked index), which is why they are ours
and not redis-py's Lock scripts.  Every key arrives through KEYS and the clock through ARGV.
Scripts are registered once (redis-py then uses EVALSHA and reloads on NOSCRIPT) and always called
with an explicit ``client=``.  Each has one Python function below that builds its keys from the
task id and turns its reply into a named outcome.

The lock's value is ``"<fence>:<owner>"``: ``fence`` is the guard's claim counter, so a holder
whose lock expired and was taken over carries an older fence, and every write it attempts fails
the fence check (a fencing token, as in Kleppmann's "How to do distributed locking").

**Safe to run twice.**  redis-py re-sends a command whose reply was lost (a dropped connection, a
Redis restart), so every script that changes state carries a per-call token and answers a re-send
as it answered the first time: CLAIM's token is its owner string (unique per delivery), FINISH's
the lock value of the claim it ends with the state it records, CANCEL and SUBMIT take a random
one.  RENEW and WRITE are idempotent as they are.

A live task's guard and record never expire (however long it waits in the broker or runs): only
the final states set ``result_ttl`` on them.  A message carries the header ``easyrag_guarded``
only when GuardedTask.apply_async wrote its guard before publishing it, so CLAIM meeting such a
message with no guard knows the task finished and its record expired.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

import redis
from redis.commands.core import Script

from easyrag.task_app import keys

TERMINAL = "s == 'COMPLETED' or s == 'FAILED' or s == 'CANCELLED' or s == 'TIMEOUT'"

# Counter field of each state a task can move into, for the stats (one hash, no scans).
COUNTERS = """local COUNTER = {PENDING = 'pending', RETRYING = 'pending', COMPLETED = 'completed',
                 FAILED = 'failed', CANCELLED = 'cancelled', TIMEOUT = 'timeout'}
"""

CLAIM = f"""
-- claim: take a task's lock and mark it RUNNING, unless it finished or a live holder runs it
-- KEYS[1] guard hash      KEYS[2] lock key        KEYS[3] record key      KEYS[4] defer marker
-- KEYS[5] counters hash
-- ARGV[1] owner, unique per delivery (also this call's token)         ARGV[2] lock ttl (ms)
-- ARGV[3] RUNNING record JSON                     ARGV[4] deferral token this message carries ('')
-- ARGV[5] a fresh deferral token                  ARGV[6] defer marker ttl (ms)
-- ARGV[7] the message's retries                   ARGV[8] '1': its guard was written before publish
-- ARGV[9] now (epoch s)   ARGV[10] must start before (epoch s, '' = no expiry)
-- ARGV[11] CANCELLED record JSON for an expired start ('')            ARGV[12] record ttl (s)
-- returns {{'OK', lock value, crashes, cancel flag, retries}} claimed ·
--   {{'BUSY', pttl ms, 'DEFER'|'DROP'}} a live holder runs it: DEFER = this message must re-publish
--   itself, DROP = a live deferral exists · {{'DONE', state}} finished or cancelled ·
--   {{'GONE'}} finished so long ago that its record expired · {{'STALE'}} a copy of an attempt
--   before the current retry · {{'EXPIRED'}} never started, and now past its expiry: CANCELLED
local guard = redis.call('HMGET', KEYS[1], 'state', 'crashes', 'cancel', 'owner', 'retries', 'fence')
local s = guard[1]
if s == 'RUNNING' and guard[4] == ARGV[1] then  -- a re-send of this very claim: answer it again
  local value = guard[6] .. ':' .. ARGV[1]
  redis.call('SET', KEYS[2], value, 'PX', ARGV[2])
  return {{'OK', value, tonumber(guard[2] or '0'), guard[3] or '0', tonumber(guard[5] or '0')}}
end
if {TERMINAL} then
  return {{'DONE', s}}
end
if (not s) and ARGV[8] == '1' then
  return {{'GONE'}}
end
local retries = tonumber(guard[5] or '0')
local message_retries = tonumber(ARGV[7])
local pttl = redis.call('PTTL', KEYS[2])
if pttl ~= -2 then
  local marker = redis.call('GET', KEYS[4])
  -- A message of a later attempt than the running one is the retry's own message (published
  -- before the holder records RETRYING): it must survive, whatever deferral already exists.
  if (not marker) or marker == ARGV[4] or marker == ARGV[5] or message_retries > retries then
    redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
    return {{'BUSY', pttl, 'DEFER'}}
  end
  return {{'BUSY', pttl, 'DROP'}}
end
if s == 'RETRYING' and message_retries < retries then
  return {{'STALE'}}  -- the retry's own message (published before RETRYING was recorded) runs it
end
-- expires bounds the start: a task that never ran (fence 0) may expire, a started one never does
if ((not s) or guard[6] == '0') and ARGV[10] ~= '' and tonumber(ARGV[9]) > tonumber(ARGV[10]) then
  redis.call('HSET', KEYS[1], 'state', 'CANCELLED')
  redis.call('EXPIRE', KEYS[1], ARGV[12])
  redis.call('SET', KEYS[3], ARGV[11], 'EX', ARGV[12])
  if s then
    redis.call('HINCRBY', KEYS[5], 'pending', -1)
  else
    redis.call('HINCRBY', KEYS[5], 'total', 1)
  end
  redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
  return {{'EXPIRED'}}
end
local crashes = tonumber(guard[2] or '0')
if s == 'RUNNING' then  -- RUNNING and no lock: the last holder died without recording an outcome
  crashes = redis.call('HINCRBY', KEYS[1], 'crashes', 1)
elseif not s then  -- published the plain Celery way (send_task): first seen here
  redis.call('HINCRBY', KEYS[5], 'total', 1)
  redis.call('HINCRBY', KEYS[5], 'running', 1)
else  -- PENDING or RETRYING
  redis.call('HINCRBY', KEYS[5], 'pending', -1)
  redis.call('HINCRBY', KEYS[5], 'running', 1)
end
if message_retries > retries then
  retries = message_retries
end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
local value = fence .. ':' .. ARGV[1]
redis.call('SET', KEYS[2], value, 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'owner', ARGV[1], 'retries', retries)
redis.call('HDEL', KEYS[1], 'release')
redis.call('PERSIST', KEYS[1])
redis.call('SET', KEYS[3], ARGV[3])
redis.call('DEL', KEYS[4])
return {{'OK', value, crashes, guard[3] or '0', retries}}
"""

RENEW = """
-- renew: keep a running task's lock alive and kombu's unacked entry of its message fresh
-- KEYS[1] lock key        KEYS[2] guard hash      KEYS[3] kombu unacked index (zset)
-- ARGV[1] lock value      ARGV[2] lock ttl (ms)   ARGV[3] delivery tag ('' if none)
-- ARGV[4] now (s, float, the client's clock as kombu uses it)
-- returns 1 renewed · 2 renewed, and a cancel was requested · 3 renewed, and its worker is
--   shutting down: release the task · -1 fenced out: stop, write nothing
local fence = tonumber(string.match(ARGV[1], '^(%d+):'))
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif (not current) and tonumber(redis.call('HGET', KEYS[2], 'fence')) == fence
    and redis.call('HGET', KEYS[2], 'state') == 'RUNNING' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])  -- the lock lapsed and nobody took over
else
  return -1
end
if ARGV[3] ~= '' then
  -- XX: refresh only; never re-create an entry that an ack removed
  redis.call('ZADD', KEYS[3], 'XX', ARGV[4], ARGV[3])
end
local flags = redis.call('HMGET', KEYS[2], 'cancel', 'release')
if flags[1] == '1' then
  return 2
end
if flags[2] == '1' then
  return 3
end
return 1
"""

FINISH = f"""
-- finish: record a task's outcome and release its lock, if this holder's fence is still current
-- KEYS[1] guard hash      KEYS[2] lock key        KEYS[3] record key      KEYS[4] counters hash
-- ARGV[1] lock value      ARGV[2] new state (the two are this call's token)  ARGV[3] record JSON
-- ARGV[4] record ttl (s)
-- ARGV[5] for RETRYING or PENDING: the CANCELLED record JSON to write instead if a cancel was
--   requested ('')        ARGV[6] for RETRYING: the retries of the next attempt
-- returns 1 recorded · 2 recorded CANCELLED instead (a cancel was requested) · 0 fenced out
--   (another holder claimed since, or not RUNNING): nothing written
-- New states: RETRYING (a retry message is already published), PENDING (released by a worker
-- shutting down; its message goes back to the queue), or a final state.
{COUNTERS}local guard = redis.call('HMGET', KEYS[1], 'state', 'fence', 'done_by', 'done_reply')
local call = ARGV[1] .. '|' .. ARGV[2]
if guard[3] == call then  -- a re-send of this very finish: answer it again
  return tonumber(guard[4])
end
local fence = tonumber(string.match(ARGV[1], '^(%d+):'))
-- RUNNING too: after this holder released for a retry its fence is still current until the
-- next claim, and a late write must not overwrite the RETRYING state
if tonumber(guard[2]) ~= fence or guard[1] ~= 'RUNNING' then
  return 0
end
local state, record, outcome = ARGV[2], ARGV[3], 1
if (state == 'RETRYING' or state == 'PENDING') and ARGV[5] ~= ''
    and redis.call('HGET', KEYS[1], 'cancel') == '1' then
  state, record, outcome = 'CANCELLED', ARGV[5], 2  -- cancelled meanwhile: no retry, no requeue
end
redis.call('HSET', KEYS[1], 'state', state, 'done_by', call, 'done_reply', outcome)
redis.call('HDEL', KEYS[1], 'owner', 'release')
redis.call('HINCRBY', KEYS[4], 'running', -1)
redis.call('HINCRBY', KEYS[4], COUNTER[state], 1)
if state == 'RETRYING' or state == 'PENDING' then  -- still live: no expiry
  if state == 'RETRYING' then
    redis.call('HSET', KEYS[1], 'retries', ARGV[6])
  end
  redis.call('SET', KEYS[3], record)
else
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('SET', KEYS[3], record, 'EX', ARGV[4])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return outcome
"""

WRITE = """
-- write: replace a running task's record (progress), if this holder's fence is still current
-- KEYS[1] guard hash      KEYS[2] record key
-- ARGV[1] lock value      ARGV[2] record JSON
-- returns 1 written · 0 fenced out
local fence = tonumber(string.match(ARGV[1], '^(%d+):'))
if tonumber(redis.call('HGET', KEYS[1], 'fence')) ~= fence
    or redis.call('HGET', KEYS[1], 'state') ~= 'RUNNING' then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

PROGRESS = """
-- progress: replace a running task's progress and message, if this holder's fence is current
-- KEYS[1] guard hash      KEYS[2] record key
-- ARGV[1] lock value      ARGV[2] the record's new tail, from ',"progress":' to its closing brace
-- returns 1 written · 0 fenced out · -1 the record has no progress tail (not ours: left alone)
-- Only the tail travels: task_data and the rest of the record stay in Redis (records.py puts
-- progress and message last, so the last ',"progress":' of the JSON is the top-level field).
local fence = tonumber(string.match(ARGV[1], '^(%d+):'))
if tonumber(redis.call('HGET', KEYS[1], 'fence')) ~= fence
    or redis.call('HGET', KEYS[1], 'state') ~= 'RUNNING' then
  return 0
end
local record = redis.call('GET', KEYS[2])
if not record then
  return -1
end
local cut, at = nil, 1
while true do
  local found = string.find(record, ',"progress":', at, true)
  if not found then break end
  cut, at = found, found + 1
end
if not cut then
  return -1
end
redis.call('SET', KEYS[2], string.sub(record, 1, cut - 1) .. ARGV[2])
return 1
"""

SUBMIT = """
-- submit: record a task PENDING before its message is published
-- KEYS[1] guard hash      KEYS[2] record key      KEYS[3] counters hash
-- KEYS[4] (optional) the owner's index: a sorted set of task ids by creation time
-- ARGV[1] PENDING record JSON                     ARGV[2] record ttl (s)
-- ARGV[3] task id         ARGV[4] created (epoch s)  ARGV[5] drop index entries created before
-- ARGV[6] this call's token
-- returns 1 recorded (or a re-send of this call) · 0 the id is known already (a re-publish)
local guard = redis.call('HMGET', KEYS[1], 'state', 'submitted_by')
if guard[2] == ARGV[6] then
  return 1
end
if guard[1] then
  return 0
end
if KEYS[4] then
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[5])
  redis.call('EXPIRE', KEYS[4], ARGV[2])
end
redis.call('HSET', KEYS[1], 'state', 'PENDING', 'fence', 0, 'submitted_by', ARGV[6])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'total', 1)
redis.call('HINCRBY', KEYS[3], 'pending', 1)
return 1
"""

UNSUBMIT = """
-- unsubmit: take back a submission whose publish failed, unless a worker got to it already
-- KEYS[1] guard hash      KEYS[2] record key      KEYS[3] counters hash
-- KEYS[4] (optional) the owner's index
-- ARGV[1] the SUBMIT call's token                 ARGV[2] task id
-- returns 1 taken back · 0 not ours, or no longer PENDING
local guard = redis.call('HMGET', KEYS[1], 'state', 'submitted_by', 'fence')
if guard[2] ~= ARGV[1] or guard[1] ~= 'PENDING' or guard[3] ~= '0' then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HINCRBY', KEYS[3], 'total', -1)
redis.call('HINCRBY', KEYS[3], 'pending', -1)
if KEYS[4] then
  redis.call('ZREM', KEYS[4], ARGV[2])
end
return 1
"""

CANCEL = f"""
-- cancel: end a task from outside its run, or ask its holder to stop
-- KEYS[1] guard hash      KEYS[2] record key      KEYS[3] counters hash   KEYS[4] lock key
-- ARGV[1] final record JSON                       ARGV[2] record ttl (s)
-- ARGV[3] this call's token                       ARGV[4] final state: CANCELLED, TIMEOUT, FAILED
-- ARGV[5] owner prefix ('node:') of a holder known to be dead (Celery killed it: terminate, hard
--   time limit), or '' when the holder may be alive
-- returns 1 ended now · 2 running: its holder will cancel it · 0 already final · -1 unknown
-- A waiting task, and a running one whose holder is dead (its lock expired, or ARGV[5] names it),
-- ends at once: atomic against CLAIM, so it can never race a start.
{COUNTERS}local guard = redis.call('HMGET', KEYS[1], 'state', 'cancelled_by', 'cancel_reply', 'owner')
if guard[2] == ARGV[3] then  -- a re-send of this very call: answer it again
  return tonumber(guard[3])
end
local s = guard[1]
if not s then
  return -1
end
if {TERMINAL} then
  return 0
end
local reply = 1
if s == 'RUNNING' then
  local lock = redis.call('GET', KEYS[4])
  local killed = ARGV[5] ~= '' and guard[4] and string.sub(guard[4], 1, #ARGV[5]) == ARGV[5]
  if lock and not killed then
    reply = 2
  end
end
redis.call('HSET', KEYS[1], 'cancelled_by', ARGV[3], 'cancel_reply', reply)
if reply == 2 then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  return 2
end
redis.call('HSET', KEYS[1], 'state', ARGV[4])
redis.call('HDEL', KEYS[1], 'owner', 'release')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[4])
redis.call('HINCRBY', KEYS[3], s == 'RUNNING' and 'running' or 'pending', -1)
redis.call('HINCRBY', KEYS[3], COUNTER[ARGV[4]], 1)
return 1
"""

ASK_RELEASE = """
-- ask_release: a worker shutting down asks its running task to give the task back
-- KEYS[1] guard hash
-- ARGV[1] the holder's owner string prefix ('node:')
-- returns 1 asked · 0 not running there (finished, or another holder)
local guard = redis.call('HMGET', KEYS[1], 'state', 'owner')
if guard[1] ~= 'RUNNING' or not guard[2] or string.sub(guard[2], 1, #ARGV[1]) ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'release', '1')
return 1
"""

DROP_DEFER = """
-- drop_defer: remove a deferral marker whose message could not be published
-- KEYS[1] defer marker    ARGV[1] the deferral's token
-- returns 1 removed · 0 another deferral owns the marker
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_registered: dict[str, Script] = {}


def _script(client: redis.Redis, source: str) -> Script:
    script = _registered.get(source)
    if script is None:
        script = _registered[source] = client.register_script(source)
    return script


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def new_token() -> str:
    """A per-call token for the scripts that take one."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Claim:
    """What CLAIM decided for one delivery."""

    outcome: str  # "OK", "BUSY", "DONE", "GONE", "STALE" or "EXPIRED" (see CLAIM's header)
    lock_value: str = ""
    crashes: int = 0
    cancel_requested: bool = False
    retries: int = 0  # OK: retries done before this attempt (the guard's count wins over the message's)
    state: str = ""  # DONE: the final state
    lock_ttl_ms: int = 0  # BUSY: the holder's remaining lock TTL
    must_defer: bool = False  # BUSY: this message must re-publish itself


def claim(client: redis.Redis, task_id: str, owner: str, lock_ttl_ms: int, running_json: str,
          carried_defer_token: str, new_defer_token: str, defer_ttl_ms: int, retries: int,
          guarded_publish: bool, now: float, expires: float | None = None, expired_json: str = "",
          record_ttl: int = 0) -> Claim:
    """Run CLAIM (one round trip).  ``owner`` must be unique per delivery: it is the call's token."""
    reply = _script(client, CLAIM)(
        keys=[keys.guard_key(task_id), keys.task_lock_key(task_id), keys.record_key(task_id),
              keys.defer_key(task_id), keys.counters_key()],
        args=[owner, lock_ttl_ms, running_json, carried_defer_token, new_defer_token, defer_ttl_ms,
              retries, "1" if guarded_publish else "", repr(now), "" if expires is None else repr(expires),
              expired_json, record_ttl],
        client=client)
    outcome = _text(reply[0])
    if outcome == "DONE":
        return Claim("DONE", state=_text(reply[1]))
    if outcome == "BUSY":
        return Claim("BUSY", lock_ttl_ms=int(reply[1]), must_defer=_text(reply[2]) == "DEFER")
    if outcome == "OK":
        return Claim("OK", lock_value=_text(reply[1]), crashes=int(reply[2]),
                     cancel_requested=_text(reply[3]) == "1", retries=int(reply[4]))
    return Claim(outcome)


def renew(client: redis.Redis, keys_: list[str], lock_value: str, lock_ttl_ms: int, delivery_tag: str,
          now: float) -> int:
    """Run RENEW (one round trip): 1 renewed, 2 and cancel requested, 3 and release requested,
    -1 fenced out."""
    return renew_many(client, [(keys_, lock_value, lock_ttl_ms, delivery_tag)], now)[0]


def renew_many(client: redis.Redis, claims: list[tuple[list[str], str, int, str]], now: float) -> list[int]:
    """RENEW each (keys, lock value, lock ttl ms, delivery tag) in one pipelined round trip."""
    script = _script(client, RENEW)
    with client.pipeline(transaction=False) as pipe:
        for keys_, lock_value, lock_ttl_ms, delivery_tag in claims:
            script(keys=keys_, client=pipe, args=[lock_value, lock_ttl_ms, delivery_tag, repr(now)])
        return [int(reply) for reply in pipe.execute()]


class Finish(enum.Enum):
    """What FINISH did."""

    RECORDED = 1
    RECORDED_CANCELLED = 2  # a cancel arrived while the run was failing or being released
    FENCED_OUT = 0  # another holder claimed since: its outcome stands; nothing written


def finish(client: redis.Redis, task_id: str, lock_value: str, state: str, record_json: str,
           record_ttl: int, cancelled_json: str = "", next_retries: int = 0) -> Finish:
    """Run FINISH (one round trip); safe to re-send (the lock value and state are the call's token)."""
    reply = _script(client, FINISH)(
        keys=[keys.guard_key(task_id), keys.task_lock_key(task_id), keys.record_key(task_id),
              keys.counters_key()],
        args=[lock_value, state, record_json, record_ttl, cancelled_json, next_retries], client=client)
    return Finish(int(reply))


def write(client: redis.Redis, task_id: str, lock_value: str, record_json: str) -> bool:
    """Run WRITE (one round trip): True when the record was replaced."""
    return bool(_script(client, WRITE)(keys=[keys.guard_key(task_id), keys.record_key(task_id)],
                                       args=[lock_value, record_json], client=client))


def progress(client: redis.Redis, task_id: str, lock_value: str, tail_json: str) -> bool:
    """Run PROGRESS (one round trip, a few dozen bytes): True when the record's tail was replaced."""
    return int(_script(client, PROGRESS)(keys=[keys.guard_key(task_id), keys.record_key(task_id)],
                                         args=[lock_value, tail_json], client=client)) == 1


def _submit_keys(task_id: str, user_id: object) -> list[str]:
    task_keys = [keys.guard_key(task_id), keys.record_key(task_id), keys.counters_key()]
    if user_id is not None:  # the owner's list of tasks (the REST API's GET /api/tasks/)
        task_keys.append(keys.owner_index_key(user_id))
    return task_keys


def submit(client: redis.Redis, task_id: str, pending_json: str, record_ttl: int, token: str,
           user_id: object = None, created: float = 0.0) -> bool:
    """Run SUBMIT (one round trip): True when the PENDING record was written by this call (a
    re-send answers True again), False when the id was known already.  With a ``user_id`` the
    task goes into the owner's index, whose entries older than the record TTL are dropped."""
    args = [pending_json, record_ttl, task_id, repr(created), repr(created - record_ttl), token]
    return bool(_script(client, SUBMIT)(keys=_submit_keys(task_id, user_id), args=args, client=client))


def unsubmit(client: redis.Redis, task_id: str, token: str, user_id: object = None) -> bool:
    """Run UNSUBMIT (one round trip): take back SUBMIT ``token``'s record; True if it was."""
    return bool(_script(client, UNSUBMIT)(keys=_submit_keys(task_id, user_id), args=[token, task_id],
                                          client=client))


class Cancel(enum.Enum):
    """What CANCEL did."""

    ENDED = 1  # the record is final now
    ASKED = 2  # running: its holder cancels the coroutine within about a second
    FINAL = 0  # already final: nothing to do
    UNKNOWN = -1  # no such task (never submitted, or its record expired)


def cancel(client: redis.Redis, task_id: str, final_json: str, record_ttl: int, token: str,
           state: str = "CANCELLED", dead_owner_prefix: str = "") -> Cancel:
    """Run CANCEL (one round trip); safe to re-send with the same ``token``."""
    reply = _script(client, CANCEL)(
        keys=[keys.guard_key(task_id), keys.record_key(task_id), keys.counters_key(),
              keys.task_lock_key(task_id)],
        args=[final_json, record_ttl, token, state, dead_owner_prefix], client=client)
    return Cancel(int(reply))


def ask_release(client: redis.Redis, task_ids: list[str], owner_prefix: str) -> int:
    """Run ASK_RELEASE for each task (one pipelined round trip); returns how many were asked."""
    script = _script(client, ASK_RELEASE)
    with client.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            script(keys=[keys.guard_key(task_id)], args=[owner_prefix], client=pipe)
        return sum(int(reply) for reply in pipe.execute())


def drop_defer(client: redis.Redis, task_id: str, token: str) -> bool:
    """Run DROP_DEFER (one round trip): True when the marker held ``token`` and is gone."""
    return bool(_script(client, DROP_DEFER)(keys=[keys.defer_key(task_id)], args=[token], client=client))
