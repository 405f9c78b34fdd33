"""Our Lua: each state change of a guarded task is one script, so one round trip.

The scripts span the lock and the record (and kombu's unacked index), which is why they are ours
and not redis-py's Lock scripts.  Every key arrives through KEYS and the clock through ARGV.
Scripts are registered once (redis-py then uses EVALSHA and reloads on NOSCRIPT) and always called
with an explicit ``client=``.  Each has one Python function below mapping its return codes.

The lock's value is ``"<fence>:<owner>"``: ``fence`` is the guard's claim counter, so a holder
whose lock expired and was taken over carries an older fence, and every write it attempts fails
the fence check (a fencing token, as in Kleppmann's "How to do distributed locking").

A live task's guard and record never expire (however long it waits in the broker or runs): only
the final states (FINISH, CANCEL) set ``result_ttl`` on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.commands.core import Script

TERMINAL = "s == 'COMPLETED' or s == 'FAILED' or s == 'CANCELLED' or s == 'TIMEOUT'"

CLAIM = f"""
-- claim: take a task's lock and mark it RUNNING, unless it finished or a live holder runs it
-- KEYS[1] guard hash      KEYS[2] lock key        KEYS[3] record key      KEYS[4] defer marker
-- KEYS[5] counters hash
-- ARGV[1] owner           ARGV[2] lock ttl (ms)   ARGV[3] RUNNING record JSON
-- ARGV[4] deferral token this message carries ('' if none)   ARGV[5] a fresh deferral token
-- ARGV[6] defer marker ttl (ms)
-- returns {{'DONE', state}} finished or cancelled · {{'BUSY', pttl ms, 'DEFER'|'DROP'}} held by a
--   live holder: DEFER = this message must re-publish itself, DROP = a live deferral exists ·
--   {{'OK', lock value, crashes, cancel flag}} claimed
local guard = redis.call('HMGET', KEYS[1], 'state', 'crashes', 'cancel')
local s = guard[1]
if {TERMINAL} then
  return {{'DONE', s}}
end
local pttl = redis.call('PTTL', KEYS[2])
if pttl ~= -2 then
  local marker = redis.call('GET', KEYS[4])
  if (not marker) or marker == ARGV[4] then
    redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
    return {{'BUSY', pttl, 'DEFER'}}
  end
  return {{'BUSY', pttl, 'DROP'}}
end
local crashes = tonumber(guard[2] or '0')
if s == 'RUNNING' then  -- RUNNING and no lock: the last holder died without recording an outcome
  crashes = redis.call('HINCRBY', KEYS[1], 'crashes', 1)
elseif not s then  -- published the plain Celery way: first seen here
  redis.call('HINCRBY', KEYS[5], 'total', 1)
  redis.call('HINCRBY', KEYS[5], 'running', 1)
else  -- PENDING or RETRYING
  redis.call('HINCRBY', KEYS[5], 'pending', -1)
  redis.call('HINCRBY', KEYS[5], 'running', 1)
end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
local value = fence .. ':' .. ARGV[1]
redis.call('SET', KEYS[2], value, 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'owner', ARGV[1])
redis.call('PERSIST', KEYS[1])
redis.call('SET', KEYS[3], ARGV[3])
redis.call('DEL', KEYS[4])
return {{'OK', value, crashes, guard[3] or '0'}}
"""

RENEW = """
-- renew: keep a running task's lock alive and kombu's unacked entry of its message fresh
-- KEYS[1] lock key        KEYS[2] guard hash      KEYS[3] kombu unacked index (zset)
-- ARGV[1] lock value      ARGV[2] lock ttl (ms)   ARGV[3] delivery tag ('' if none)
-- ARGV[4] now (s, float, the client's clock as kombu uses it)
-- returns 1 renewed · 2 renewed, and a cancel was requested · -1 fenced out: stop, write nothing
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
if redis.call('HGET', KEYS[2], 'cancel') == '1' then
  return 2
end
return 1
"""

# Counter field of each state a task can move into, for the stats (one hash, no scans).
COUNTERS = """local COUNTER = {RETRYING = 'pending', COMPLETED = 'completed', FAILED = 'failed',
                 CANCELLED = 'cancelled', TIMEOUT = 'timeout'}
"""

FINISH = f"""
-- finish: record a task's outcome and release its lock, if this holder's fence is still current
-- KEYS[1] guard hash      KEYS[2] lock key        KEYS[3] record key      KEYS[4] counters hash
-- ARGV[1] lock value      ARGV[2] new state       ARGV[3] record JSON     ARGV[4] record ttl (s)
-- ARGV[5] for RETRYING: the CANCELLED record JSON to write instead if a cancel was requested ('')
-- returns 1 recorded · 2 recorded CANCELLED instead of RETRYING · 0 fenced out (another holder
--   claimed since, or not RUNNING): nothing written
{COUNTERS}local fence = tonumber(string.match(ARGV[1], '^(%d+):'))
local s = redis.call('HGET', KEYS[1], 'state')
-- RUNNING too: after this holder released for a retry its fence is still current until the
-- next claim, and a late write must not overwrite the RETRYING state
if tonumber(redis.call('HGET', KEYS[1], 'fence')) ~= fence or s ~= 'RUNNING' then
  return 0
end
local state, record, outcome = ARGV[2], ARGV[3], 1
if state == 'RETRYING' and ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'cancel') == '1' then
  state, record, outcome = 'CANCELLED', ARGV[5], 2  -- cancelled while failing: no retry
end
redis.call('HSET', KEYS[1], 'state', state)
redis.call('HDEL', KEYS[1], 'owner')
redis.call('HINCRBY', KEYS[4], 'running', -1)
redis.call('HINCRBY', KEYS[4], COUNTER[state], 1)
if state == 'RETRYING' then  -- still live: no expiry
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

SUBMIT = """
-- submit: record a just-published task PENDING, unless a delivery already claimed it
-- KEYS[1] guard hash      KEYS[2] record key      KEYS[3] counters hash
-- KEYS[4] (optional) the owner's index: a sorted set of task ids by creation time
-- ARGV[1] PENDING record JSON                     ARGV[2] record ttl (s)
-- ARGV[3] task id         ARGV[4] created (epoch s)  ARGV[5] drop index entries created before
-- returns 1 recorded · 0 the id is known already (a worker was faster, or a re-publish)
if KEYS[4] then  -- indexed even when a worker was faster: the owner must find it in the list
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[5])
  redis.call('EXPIRE', KEYS[4], ARGV[2])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'PENDING', 'fence', 0)
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'total', 1)
redis.call('HINCRBY', KEYS[3], 'pending', 1)
return 1
"""

CANCEL = f"""
-- cancel: a waiting task becomes CANCELLED at once; a running one is asked to stop
-- KEYS[1] guard hash      KEYS[2] record key      KEYS[3] counters hash
-- ARGV[1] CANCELLED record JSON                   ARGV[2] record ttl (s)
-- returns 1 cancelled · 2 running: its holder will cancel it · 0 already final · -1 unknown
local s = redis.call('HGET', KEYS[1], 'state')
if not s then
  return -1
end
if {TERMINAL} then
  return 0
end
redis.call('HSET', KEYS[1], 'cancel', '1')
if s == 'RUNNING' then
  return 2
end
-- PENDING or RETRYING: atomic against CLAIM, so it can never race a start
redis.call('HSET', KEYS[1], 'state', 'CANCELLED')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('HINCRBY', KEYS[3], 'pending', -1)
redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
return 1
"""

_registered: dict[str, Script] = {}


def _script(client: redis.Redis, source: str) -> Script:
    script = _registered.get(source)
    if script is None:
        script = _registered[source] = client.register_script(source)
    return script


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Claim:
    """What CLAIM decided for one delivery."""

    outcome: str  # "OK", "BUSY" or "DONE"
    lock_value: str = ""
    crashes: int = 0
    cancel_requested: bool = False
    state: str = ""  # DONE: the final state
    lock_ttl_ms: int = 0  # BUSY: the holder's remaining lock TTL
    must_defer: bool = False  # BUSY: this message must re-publish itself


def claim(client: redis.Redis, keys: list[str], owner: str, lock_ttl_ms: int, running_json: str,
          carried_defer_token: str, new_defer_token: str, defer_ttl_ms: int) -> Claim:
    """Run CLAIM (one round trip)."""
    reply = _script(client, CLAIM)(keys=keys, client=client, args=[
        owner, lock_ttl_ms, running_json, carried_defer_token, new_defer_token, defer_ttl_ms,
    ])
    outcome = _text(reply[0])
    if outcome == "DONE":
        return Claim("DONE", state=_text(reply[1]))
    if outcome == "BUSY":
        return Claim("BUSY", lock_ttl_ms=int(reply[1]), must_defer=_text(reply[2]) == "DEFER")
    return Claim("OK", lock_value=_text(reply[1]), crashes=int(reply[2]),
                 cancel_requested=_text(reply[3]) == "1")


def renew(client: redis.Redis, keys: list[str], lock_value: str, lock_ttl_ms: int, delivery_tag: str,
          now: float) -> int:
    """Run RENEW (one round trip): 1 renewed, 2 renewed and cancel requested, -1 fenced out."""
    return renew_many(client, [(keys, lock_value, lock_ttl_ms, delivery_tag)], now)[0]


def renew_many(client: redis.Redis, claims: list[tuple[list[str], str, int, str]], now: float) -> list[int]:
    """RENEW each (keys, lock value, lock ttl ms, delivery tag) in one pipelined round trip."""
    script = _script(client, RENEW)
    with client.pipeline(transaction=False) as pipe:
        for keys, lock_value, lock_ttl_ms, delivery_tag in claims:
            script(keys=keys, client=pipe, args=[lock_value, lock_ttl_ms, delivery_tag, repr(now)])
        return [int(reply) for reply in pipe.execute()]


def finish(client: redis.Redis, keys: list[str], lock_value: str, state: str, record_json: str,
           record_ttl: int, cancelled_json: str = "") -> int:
    """Run FINISH (one round trip): 1 recorded and the lock released; 2 recorded CANCELLED instead
    of RETRYING (``cancelled_json``: a cancel was requested meanwhile); 0 fenced out."""
    return int(_script(client, FINISH)(keys=keys, client=client,
                                       args=[lock_value, state, record_json, record_ttl, cancelled_json]))


def write(client: redis.Redis, keys: list[str], lock_value: str, record_json: str) -> bool:
    """Run WRITE (one round trip): True when the record was replaced."""
    return bool(_script(client, WRITE)(keys=keys, client=client, args=[lock_value, record_json]))


def submit(client: redis.Redis, keys: list[str], pending_json: str, record_ttl: int, task_id: str = "",
           created: float = 0.0) -> bool:
    """Run SUBMIT (one round trip): True when the PENDING record was written.  When ``keys`` has
    the owner's index the task is indexed in any case, and entries older than the record TTL are
    dropped from it."""
    args = [pending_json, record_ttl, task_id, repr(created), repr(created - record_ttl)]
    return bool(_script(client, SUBMIT)(keys=keys, client=client, args=args))


def cancel(client: redis.Redis, keys: list[str], cancelled_json: str, record_ttl: int) -> int:
    """Run CANCEL (one round trip): 1 cancelled, 2 running (asked to stop), 0 final, -1 unknown."""
    return int(_script(client, CANCEL)(keys=keys, client=client, args=[cancelled_json, record_ttl]))
