"""Our Lua: each state change of a guarded task is one script, so one round trip.

The scripts span the lock, the record, kombu's lists and unacked index, which is why they are ours
and not redis-py's Lock scripts.  Every key arrives through KEYS and the clock through ARGV, but
one: a task's idempotency key is named in its guard, and the step that ends the task gives it the
record's TTL.  Scripts are registered once (redis-py then uses EVALSHA and reloads on NOSCRIPT) and
always called with an explicit ``client=``.  Each has one Python function below that builds its
keys from the task id and turns its reply into a named outcome.

The lock's value is ``"<fence>:<owner>"``: ``fence`` is the guard's claim counter, so a holder
whose lock expired and was taken over carries an older fence, and every write it attempts fails
the fence check (a fencing token, as in Kleppmann's "How to do distributed locking").

**One key per finished task.**  A live task has its record and its guard (a small hash), neither
expiring however long the task waits or runs.  The step that ends it (FINISH, CANCEL, or CLAIM
finding it expired) writes the final record with ``result_ttl`` and deletes the guard: from then
on the record alone says the task is final.  CLAIM meeting a message whose guard is gone reads
the record: there, the task is DONE; gone too, and the message carries ``easyrag_guarded`` (set
when SUBMIT wrote the guard together with the message), the task finished so long ago that its
record expired (GONE); otherwise it is a message published the plain Celery way, first seen.

**Safe to run twice.**  redis-py re-sends a command whose reply was lost (a dropped connection, a
Redis restart), so every script that changes state answers a re-send as it answered the first
time: CLAIM's token is its owner string (unique per delivery), FINISH's the lock value of the
claim it ends with the state it records, CANCEL and SUBMIT take a random one.  A step that ended
the task finds its answer in the final record, which is exactly the one it wrote.  RENEW and
WRITE are idempotent as they are.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import uuid
from dataclasses import dataclass

import redis
from redis.commands.core import Script

from easyrag.task_app import keys
from easyrag.task_app.records import FINAL_STATUSES, TaskStatus

#: Counter field of each state a task can move into: the stats' one hash, no scans.
COUNTER_OF_STATE = {
    TaskStatus.PENDING: "pending", TaskStatus.RETRYING: "pending", TaskStatus.COMPLETED: "completed",
    TaskStatus.FAILED: "failed", TaskStatus.CANCELLED: "cancelled", TaskStatus.TIMEOUT: "timeout",
}

#: The per-name metrics (``P:metrics``, fields ``<metric>|<task type>``) each state a task moves into
#: adds one to, in celery-exporter's terms: a TIMEOUT is a failure to Celery (AsyncResult says
#: FAILURE), and counted apart as well.
METRICS_OF_STATE = {
    TaskStatus.COMPLETED: ("succeeded",), TaskStatus.FAILED: ("failed",),
    TaskStatus.TIMEOUT: ("failed", "timeouts"), TaskStatus.CANCELLED: ("revoked",),
    TaskStatus.RETRYING: ("retried",),
}
#: Final states whose task joins the recent failures (``P:recent:failed``) the dashboard lists.
FAILURE_STATES = (TaskStatus.FAILED, TaskStatus.TIMEOUT)
#: Upper bounds (seconds) of the runtime histogram's buckets: Prometheus' default buckets, then
#: the minutes a document parse or an embedding run takes.  Fixed: a scrape adds them up.
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                   30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, float("inf"))

# Lua fragments generated from the Python constants, so the two can never disagree.
TERMINAL = " or ".join(f"s == '{state.value}'" for state in sorted(FINAL_STATUSES))
COUNTERS = ("local COUNTER = {"
            + ", ".join(f"{state.value} = '{name}'" for state, name in COUNTER_OF_STATE.items()) + "}\n")
# The metrics of a state change, by task type; a failure also joins the newest failures' index.
METRICS = ("local METRICS = {"
           + ", ".join(f"{state.value} = {{" + ", ".join(f"'{name}'" for name in names) + "}"
                       for state, names in METRICS_OF_STATE.items()) + "}\n"
           + """local function count(hash, state, name)
  for _, metric in ipairs(METRICS[state] or {}) do
    redis.call('HINCRBY', hash, metric .. '|' .. name, 1)
  end
end
local function newest(index, score, task_id, kept)
  redis.call('ZADD', index, score, task_id)
  redis.call('ZREMRANGEBYRANK', index, 0, -tonumber(kept) - 1)
end
local function note_failure(index, state, score, task_id, kept)
  if """ + " or ".join(f"state == '{state.value}'" for state in FAILURE_STATES) + """ then
    newest(index, score, task_id, kept)
  end
end
""")
# A final state ends the guard: the final record (written with its TTL by the caller) is then the
# task's one key.  The task's idempotency key gets the record's TTL, and Celery's result consumers
# wake: the record is published on the task's result channel, which RecordBackend
# (result_backend.py) decodes as Celery's result meta.
ENDED = """local function ended(guard, ttl, channel, record)
  local idem = redis.call('HGET', guard, 'idem')
  if idem then
    redis.call('EXPIRE', idem, ttl)
  end
  redis.call('DEL', guard)
  if channel ~= '' then
    redis.call('PUBLISH', channel, record)
  end
end
"""
# With no guard, a task's record is final (a live task always has its guard).  Its status follows
# its task_id at the start of the JSON (records.py), so it is read without decoding task_data.
RECORDED_STATE = """local function recorded_state(key)
  local record = redis.call('GET', key)
  if not record then
    return nil, nil
  end
  local state = string.match(record, '^{"task_id":"[^"]*","status":"(%u+)"')
  return state or cjson.decode(record)['status'], record
end
"""

CLAIM = f"""
-- claim: take a task's lock and mark it RUNNING, unless it finished or a live holder runs it
-- KEYS[1] guard hash      KEYS[2] lock key        KEYS[3] record key      KEYS[4] defer marker
-- KEYS[5] counters hash   KEYS[6] metrics hash    KEYS[7] recent tasks (zset)
-- ARGV[1] owner, unique per delivery (also this call's token)         ARGV[2] lock ttl (ms)
-- ARGV[3] RUNNING record JSON                     ARGV[4] deferral token this message carries ('')
-- ARGV[5] a fresh deferral token                  ARGV[6] defer marker ttl (ms)
-- ARGV[7] the message's retries                   ARGV[8] '1': its guard was written with its message
-- ARGV[9] now (epoch s)   ARGV[10] must start before (epoch s, '' = no expiry)
-- ARGV[11] CANCELLED record JSON for an expired start ('')            ARGV[12] record ttl (s)
-- ARGV[13] the task's result channel ('': publish nothing)
-- ARGV[14] the task type (the metrics' name)      ARGV[15] recent tasks kept
-- ARGV[16] the task id
-- returns {{'OK', lock value, crashes, cancel flag, retries}} claimed ·
--   {{'BUSY', pttl ms, 'DEFER'|'DROP'}} a live holder runs it: DEFER = this message must re-publish
--   itself, DROP = a live deferral exists · {{'DONE', state}} finished or cancelled ·
--   {{'GONE'}} finished so long ago that its record expired · {{'STALE'}} a copy of an attempt
--   before the current retry · {{'EXPIRED'}} never started, and now past its expiry: CANCELLED
-- A copy it drops or defers (BUSY, DONE, GONE, STALE) counts one duplicate delivery: when it
-- first meets the guard, not again as a deferral (which carries a token), and never the next
-- attempt's own message.
{METRICS}{ENDED}{RECORDED_STATE}
local function duplicate()
  if ARGV[4] == '' then
    redis.call('HINCRBY', KEYS[6], 'duplicate_deliveries', 1)
  end
end
local function first_seen()  -- published the plain Celery way: sent, as far as anyone knows, now
  redis.call('HINCRBY', KEYS[5], 'total', 1)
  redis.call('HINCRBY', KEYS[6], 'sent|' .. ARGV[14], 1)
  newest(KEYS[7], ARGV[9], ARGV[16], ARGV[15])
end
local guard = redis.call('HMGET', KEYS[1], 'state', 'crashes', 'cancel', 'owner', 'retries', 'fence')
local s = guard[1]
if s == 'RUNNING' and guard[4] == ARGV[1] then  -- a re-send of this very claim: answer it again
  local value = guard[6] .. ':' .. ARGV[1]
  redis.call('SET', KEYS[2], value, 'PX', ARGV[2])
  return {{'OK', value, tonumber(guard[2] or '0'), guard[3] or '0', tonumber(guard[5] or '0')}}
end
if {TERMINAL} then  -- a final guard kept by an earlier version
  duplicate()
  return {{'DONE', s}}
end
if not s then
  local final, record = recorded_state(KEYS[3])
  if final then
    if ARGV[11] ~= '' and record == ARGV[11] then
      return {{'EXPIRED'}}  -- a re-send of this very claim, which found it expired
    end
    duplicate()
    return {{'DONE', final}}
  end
  if ARGV[8] == '1' then
    duplicate()
    return {{'GONE'}}
  end
end
local retries = tonumber(guard[5] or '0')
local message_retries = tonumber(ARGV[7])
local pttl = redis.call('PTTL', KEYS[2])
if pttl ~= -2 then
  local marker = redis.call('GET', KEYS[4])
  -- A message of a later attempt than the running one is the retry's own message (published
  -- before the holder records RETRYING): it must survive, whatever deferral already exists.
  if message_retries <= retries then
    duplicate()
  end
  if (not marker) or marker == ARGV[4] or marker == ARGV[5] or message_retries > retries then
    redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
    return {{'BUSY', pttl, 'DEFER'}}
  end
  return {{'BUSY', pttl, 'DROP'}}
end
if s == 'RETRYING' and message_retries < retries then
  duplicate()
  return {{'STALE'}}  -- the retry's own message (published before RETRYING was recorded) runs it
end
-- expires bounds the start: a task that never ran (fence 0) may expire, a started one never does
if ((not s) or guard[6] == '0') and ARGV[10] ~= '' and tonumber(ARGV[9]) > tonumber(ARGV[10]) then
  redis.call('SET', KEYS[3], ARGV[11], 'EX', ARGV[12])
  if s then
    redis.call('HINCRBY', KEYS[5], 'pending', -1)
  else
    first_seen()
  end
  redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
  count(KEYS[6], 'CANCELLED', ARGV[14])
  ended(KEYS[1], ARGV[12], ARGV[13], ARGV[11])
  return {{'EXPIRED'}}
end
local crashes = tonumber(guard[2] or '0')
if s == 'RUNNING' then  -- RUNNING and no lock: the last holder died without recording an outcome
  crashes = redis.call('HINCRBY', KEYS[1], 'crashes', 1)
  redis.call('HINCRBY', KEYS[5], 'crashes', 1)  -- crashed executions, cluster-wide
  redis.call('HINCRBY', KEYS[6], 'crashes|' .. ARGV[14], 1)
elseif not s then  -- published the plain Celery way (send_task): first seen here
  first_seen()
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
redis.call('HINCRBY', KEYS[6], 'started|' .. ARGV[14], 1)
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
-- KEYS[5] metrics hash    KEYS[6] recent failures (zset)
-- ARGV[1] lock value      ARGV[2] new state (the two are this call's token)  ARGV[3] record JSON
-- ARGV[4] record ttl (s)
-- ARGV[5] for RETRYING or PENDING: the CANCELLED record JSON to write instead if a cancel was
--   requested ('')        ARGV[6] for RETRYING: the retries of the next attempt
-- ARGV[7] the task's result channel, published to on a final state ('': none)
-- ARGV[8] the task type (the metrics' name)       ARGV[9] task id         ARGV[10] now (epoch s)
-- ARGV[11] recent failures kept                   ARGV[12] the run's seconds
-- ARGV[13] its runtime histogram bucket (upper bound, as the field names it)
-- returns 1 recorded · 2 recorded CANCELLED instead (a cancel was requested) · 0 fenced out
--   (another holder claimed since, or not RUNNING): nothing written
-- A re-send finds its own answer: a live state's in the guard (done_by), a final state's in the
-- record itself (the guard is gone, and the stored record is exactly the one this call wrote).
-- New states: RETRYING (a retry message is already published), PENDING (released by a worker
-- shutting down; its message goes back to the queue), or a final state.
{COUNTERS}{METRICS}{ENDED}
local guard = redis.call('HMGET', KEYS[1], 'state', 'fence', 'done_by', 'done_reply')
local call = ARGV[1] .. '|' .. ARGV[2]
if guard[3] == call then  -- a re-send of this very finish: answer it again
  return tonumber(guard[4])
end
if not guard[1] then
  local record = redis.call('GET', KEYS[3])
  if record == ARGV[3] then
    return 1
  end
  if ARGV[5] ~= '' and record == ARGV[5] then
    return 2
  end
  return 0
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
redis.call('HINCRBY', KEYS[4], 'running', -1)
redis.call('HINCRBY', KEYS[4], COUNTER[state], 1)
count(KEYS[5], state, ARGV[8])
note_failure(KEYS[6], state, ARGV[10], ARGV[9], ARGV[11])
if state == 'COMPLETED' then  -- the runtime histogram of succeeded tasks, as celery-exporter's
  redis.call('HINCRBY', KEYS[5], 'runtime|' .. ARGV[13] .. '|' .. ARGV[8], 1)
  redis.call('HINCRBYFLOAT', KEYS[5], 'runtime_sum|' .. ARGV[8], ARGV[12])
end
if state == 'RETRYING' or state == 'PENDING' then  -- still live: no expiry
  redis.call('HSET', KEYS[1], 'state', state, 'done_by', call, 'done_reply', outcome)
  redis.call('HDEL', KEYS[1], 'owner', 'release')
  if state == 'RETRYING' then
    redis.call('HSET', KEYS[1], 'retries', ARGV[6])
  end
  redis.call('SET', KEYS[3], record)
else
  redis.call('SET', KEYS[3], record, 'EX', ARGV[4])
  ended(KEYS[1], ARGV[4], ARGV[7], record)
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
-- submit: a task in one atomic step: the queue bound, the idempotency key, the broker message
-- (built by kombu, handed over here: submission.py) and the PENDING record with its counters and
-- index.  A message due later waits in the scheduled set instead of the broker (scheduler.py).
-- KEYS[1] guard hash      KEYS[2] record key      KEYS[3] counters hash
-- KEYS[4] the broker list the message goes onto   KEYS[5] the owner's index (a sorted set)
-- KEYS[6] the idempotency key                     KEYS[7] scheduled zset  KEYS[8] scheduled messages
-- KEYS[9] metrics hash    KEYS[10] recent tasks (zset)
-- KEYS[11..] the queue's lists, for the bound
-- ARGV[1] PENDING record JSON                     ARGV[2] record ttl (s)
-- ARGV[3] task id         ARGV[4] created (epoch s)  ARGV[5] drop index entries created before
-- ARGV[6] this call's token (also the scheduled entry's)
-- ARGV[7] the message, as kombu serialised it
-- ARGV[8] queue bound (0: none)                   ARGV[9] '1': index the task under its owner
-- ARGV[10] the request's fingerprint for the idempotency key ('': no key)
-- ARGV[11] due (epoch s; '' or not after ARGV[12]: now)                ARGV[12] now (epoch s)
-- ARGV[13] '1': a known task's message again (a retry, a deferral): the message only
-- ARGV[14] the task type (the metrics' name)      ARGV[15] recent tasks kept
-- returns {'NEW'} queued (or scheduled) and recorded, or a re-send of this call · {'KNOWN'}
--   queued or scheduled; the id was recorded before (its guard decides at claim) · {'SAME', id}
--   the key's first task: nothing queued · {'CONFLICT', id} the key was used for another request:
--   nothing queued · {'FULL', waiting} the bound is reached: nothing queued
local guard = redis.call('HMGET', KEYS[1], 'state', 'submitted_by')
if guard[2] == ARGV[6] then
  return {'NEW'}
end
local delayed = ARGV[11] ~= '' and tonumber(ARGV[11]) > tonumber(ARGV[12])
if ARGV[13] ~= '1' then
  if ARGV[10] ~= '' then
    local first = redis.call('GET', KEYS[6])
    if first then
      local id, fingerprint = string.match(first, '^(%S+) (%S+)$')
      if fingerprint == ARGV[10] then
        return {'SAME', id}
      end
      return {'CONFLICT', id}
    end
  end
  local bound = tonumber(ARGV[8])
  if bound > 0 and not delayed then  -- the bound counts what waits in the broker
    local waiting = 0
    for i = 11, #KEYS do
      waiting = waiting + redis.call('LLEN', KEYS[i])
    end
    if waiting >= bound then
      return {'FULL', waiting}
    end
  end
end
if delayed then
  redis.call('ZADD', KEYS[7], ARGV[11], ARGV[6])
  redis.call('HSET', KEYS[8], ARGV[6],
             cjson.encode({task_id = ARGV[3], list = KEYS[4], message = ARGV[7]}))
else
  redis.call('LPUSH', KEYS[4], ARGV[7])
end
if ARGV[13] == '1' or guard[1] or redis.call('EXISTS', KEYS[2]) == 1 then  -- live, or final
  if delayed and guard[1] then
    redis.call('HSET', KEYS[1], 'scheduled', ARGV[6])  -- a cancel takes it out of the set
  end
  return {'KNOWN'}
end
if ARGV[9] == '1' then
  redis.call('ZADD', KEYS[5], ARGV[4], ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[5])
  redis.call('EXPIRE', KEYS[5], ARGV[2])
end
redis.call('HSET', KEYS[1], 'state', 'PENDING', 'fence', 0, 'submitted_by', ARGV[6])
if delayed then
  redis.call('HSET', KEYS[1], 'scheduled', ARGV[6])
end
if ARGV[10] ~= '' then  -- no expiry while the task lives: it ends with the record (ENDED)
  redis.call('SET', KEYS[6], ARGV[3] .. ' ' .. ARGV[10])
  redis.call('HSET', KEYS[1], 'idem', KEYS[6])
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'total', 1)
redis.call('HINCRBY', KEYS[3], 'pending', 1)
redis.call('HINCRBY', KEYS[9], 'sent|' .. ARGV[14], 1)
redis.call('ZADD', KEYS[10], ARGV[4], ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[10], 0, -tonumber(ARGV[15]) - 1)
return {'NEW'}
"""

PROMOTE = """
-- promote: move the delayed messages that are due onto their broker lists, each exactly once
-- KEYS[1] scheduled zset  KEYS[2] scheduled messages hash
-- ARGV[1] now (epoch s)   ARGV[2] at most this many   ARGV[3] the guard key prefix ('P:guard:')
-- returns the number of messages pushed.  A message whose task has ended (no guard: cancelled,
-- or finished by another copy) is dropped instead.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local pushed = 0
for _, token in ipairs(due) do
  local entry = redis.call('HGET', KEYS[2], token)
  redis.call('ZREM', KEYS[1], token)
  redis.call('HDEL', KEYS[2], token)
  if entry then
    local scheduled = cjson.decode(entry)
    if redis.call('EXISTS', ARGV[3] .. scheduled.task_id) == 1 then
      redis.call('LPUSH', scheduled.list, scheduled.message)
      pushed = pushed + 1
    end
  end
end
return pushed
"""

CANCEL = f"""
-- cancel: end a task from outside its run, or ask its holder to stop
-- KEYS[1] guard hash      KEYS[2] record key      KEYS[3] counters hash   KEYS[4] lock key
-- ARGV[1] final record JSON                       ARGV[2] record ttl (s)
-- ARGV[3] this call's token                       ARGV[4] final state: CANCELLED, TIMEOUT, FAILED
-- ARGV[5] owner prefix ('node:') of a holder known to be dead (Celery killed it: terminate, hard
--   time limit), or '' when the holder may be alive
-- ARGV[6] the task's result channel ('': publish nothing)
-- KEYS[5] scheduled zset  KEYS[6] scheduled messages: a delayed task's entry goes with it
-- KEYS[7] metrics hash    KEYS[8] recent failures (zset)
-- ARGV[7] the task type (the metrics' name)       ARGV[8] task id         ARGV[9] now (epoch s)
-- ARGV[10] recent failures kept
-- returns 1 ended now · 2 running: its holder will cancel it · 0 already final · -1 unknown
-- A waiting task, and a running one whose holder is dead (its lock expired, or ARGV[5] names it),
-- ends at once: atomic against CLAIM, so it can never race a start.  A re-send finds its answer in
-- the guard (ASKED) or, once the task ended, in the record: exactly the one this call wrote.
{COUNTERS}{METRICS}{ENDED}
local guard = redis.call('HMGET', KEYS[1], 'state', 'cancelled_by', 'cancel_reply', 'owner')
if guard[2] == ARGV[3] then  -- a re-send of this very call: answer it again
  return tonumber(guard[3])
end
local s = guard[1]
if not s then
  local record = redis.call('GET', KEYS[2])
  if not record then
    return -1
  end
  return record == ARGV[1] and 1 or 0
end
if {TERMINAL} then  -- a final guard kept by an earlier version
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
if reply == 2 then
  redis.call('HSET', KEYS[1], 'cancel', '1', 'cancelled_by', ARGV[3], 'cancel_reply', 2)
  return 2
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[4])
local scheduled = redis.call('HGET', KEYS[1], 'scheduled')
if scheduled then
  redis.call('ZREM', KEYS[5], scheduled)
  redis.call('HDEL', KEYS[6], scheduled)
end
redis.call('HINCRBY', KEYS[3], s == 'RUNNING' and 'running' or 'pending', -1)
redis.call('HINCRBY', KEYS[3], COUNTER[ARGV[4]], 1)
count(KEYS[7], ARGV[4], ARGV[7])
note_failure(KEYS[8], ARGV[4], ARGV[9], ARGV[8], ARGV[10])
ended(KEYS[1], ARGV[2], ARGV[6], ARGV[1])
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

LOSE_NODES = """
-- lose_nodes: take nodes whose heartbeat expired out of the registry, and note them lost
-- KEYS[1] node registry (set)                     KEYS[2] lost nodes (zset)
-- KEYS[3..] each node's heartbeat key             ARGV[1] now (epoch s)
-- ARGV[2..] the node names, in KEYS' order
-- returns the names moved.  A node whose heartbeat is back (it started again) or that left the
-- registry meanwhile (a warm stop forgot it) is left alone.
local moved = {}
for i = 2, #ARGV do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 and redis.call('SREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
    moved[#moved + 1] = ARGV[i]
  end
end
return moved
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


class ClaimOutcome(enum.StrEnum):
    """What CLAIM decided for a delivery (see CLAIM's header)."""

    OK = "OK"  # claimed: run it
    BUSY = "BUSY"  # a live holder runs it
    DONE = "DONE"  # finished or cancelled
    GONE = "GONE"  # finished so long ago that its record expired
    STALE = "STALE"  # a copy of an attempt before the current retry
    EXPIRED = "EXPIRED"  # never started, past its expiry: CANCELLED now


@dataclass(frozen=True)
class Claim:
    """What CLAIM decided for one delivery."""

    outcome: ClaimOutcome
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
          record_ttl: int = 0, *, task_type: str) -> Claim:
    """Run CLAIM (one round trip).  ``owner`` must be unique per delivery: it is the call's token."""
    reply = _script(client, CLAIM)(
        keys=[keys.guard_key(task_id), keys.task_lock_key(task_id), keys.record_key(task_id),
              keys.defer_key(task_id), keys.counters_key(), keys.metrics_key(), keys.recent_key()],
        args=[owner, lock_ttl_ms, running_json, carried_defer_token, new_defer_token, defer_ttl_ms,
              retries, "1" if guarded_publish else "", repr(now), "" if expires is None else repr(expires),
              expired_json, record_ttl, keys.result_channel(task_id), task_type, keys.RECENT_TASKS_KEPT,
              task_id],
        client=client)
    outcome = ClaimOutcome(_text(reply[0]))
    if outcome is ClaimOutcome.DONE:
        return Claim(outcome, state=_text(reply[1]))
    if outcome is ClaimOutcome.BUSY:
        return Claim(outcome, lock_ttl_ms=int(reply[1]), must_defer=_text(reply[2]) == "DEFER")
    if outcome is ClaimOutcome.OK:
        return Claim(outcome, lock_value=_text(reply[1]), crashes=int(reply[2]),
                     cancel_requested=_text(reply[3]) == "1", retries=int(reply[4]))
    return Claim(outcome)


class Renewed(enum.IntEnum):
    """What RENEW found (see its header)."""

    RENEWED = 1
    CANCEL_REQUESTED = 2  # renewed; cancel_task asked the run to stop
    RELEASE_REQUESTED = 3  # renewed; its worker is shutting down: give the task back
    FENCED_OUT = -1  # another holder claimed since, or the task ended: stop, write nothing


@dataclass(frozen=True)
class Renewing:
    """One running claim for RENEW: the task, its lock value, and its message's kombu entry."""

    task_id: str
    lock_value: str
    lock_ttl_ms: int
    delivery_tag: str  # '' for none
    unacked_index: str  # kombu's unacked index key (its global key prefix included)


def renew(client: redis.Redis, claim: Renewing, now: float) -> Renewed:
    """Run RENEW for one claim (one round trip)."""
    return renew_many(client, [claim], now)[0]


def renew_many(client: redis.Redis, claims: list[Renewing], now: float) -> list[Renewed]:
    """RENEW each claim in one pipelined round trip."""
    script = _script(client, RENEW)
    with client.pipeline(transaction=False) as pipe:
        for claim in claims:
            renew_keys = [keys.task_lock_key(claim.task_id), keys.guard_key(claim.task_id),
                          claim.unacked_index]
            script(keys=renew_keys, args=[claim.lock_value, claim.lock_ttl_ms, claim.delivery_tag, repr(now)],
                   client=pipe)
        return [Renewed(int(reply)) for reply in pipe.execute()]


class Finish(enum.Enum):
    """What FINISH did."""

    RECORDED = 1
    RECORDED_CANCELLED = 2  # a cancel arrived while the run was failing or being released
    FENCED_OUT = 0  # another holder claimed since: its outcome stands; nothing written


def runtime_bucket(seconds: float) -> str:
    """The runtime histogram's bucket of a run of ``seconds``: its upper bound as a field names it."""
    bound = next(bound for bound in RUNTIME_BUCKETS if seconds <= bound)
    return "+Inf" if bound == float("inf") else repr(bound)


def finish(client: redis.Redis, task_id: str, lock_value: str, state: str, record_json: str,
           record_ttl: int, cancelled_json: str = "", next_retries: int = 0, *, task_type: str,
           runtime: float = 0.0) -> Finish:
    """Run FINISH (one round trip); safe to re-send (the lock value and state are the call's token).
    ``runtime``: seconds the run took, for the histogram of a COMPLETED task."""
    reply = _script(client, FINISH)(
        keys=[keys.guard_key(task_id), keys.task_lock_key(task_id), keys.record_key(task_id),
              keys.counters_key(), keys.metrics_key(), keys.recent_failures_key()],
        args=[lock_value, state, record_json, record_ttl, cancelled_json, next_retries,
              keys.result_channel(task_id), task_type, task_id, repr(time.time()),
              keys.RECENT_FAILURES_KEPT, repr(runtime), runtime_bucket(runtime)], client=client)
    return Finish(int(reply))


def write(client: redis.Redis, task_id: str, lock_value: str, record_json: str) -> bool:
    """Run WRITE (one round trip): True when the record was replaced."""
    return bool(_script(client, WRITE)(keys=[keys.guard_key(task_id), keys.record_key(task_id)],
                                       args=[lock_value, record_json], client=client))


def progress(client: redis.Redis, task_id: str, lock_value: str, tail_json: str) -> bool:
    """Run PROGRESS (one round trip, a few dozen bytes): True when the record's tail was replaced."""
    return int(_script(client, PROGRESS)(keys=[keys.guard_key(task_id), keys.record_key(task_id)],
                                         args=[lock_value, tail_json], client=client)) == 1


class Submitted(enum.StrEnum):
    """What SUBMIT did (see its header)."""

    NEW = "NEW"  # queued and recorded PENDING
    KNOWN = "KNOWN"  # queued; the id was recorded before (a re-publish: its guard decides)
    SAME = "SAME"  # the idempotency key's first task: nothing queued
    CONFLICT = "CONFLICT"  # the idempotency key belongs to another request: nothing queued
    FULL = "FULL"  # the queue bound is reached: nothing queued


@dataclass(frozen=True)
class Submission:
    """A new task for SUBMIT: its PENDING record and what the step checks before queueing it."""

    task_id: str
    pending_json: str
    user_id: object = None
    created: float = 0.0
    queue_bound: int = 0
    idempotency_key: str = ""  # the Redis key (keys.idempotency_key), '' for none
    fingerprint: str = ""  # of the request, compared on a repeat of the key
    token: str = dataclasses.field(default_factory=lambda: new_token())
    due: float | None = None  # epoch seconds of a delayed start (None: now)
    republish: bool = False  # a known task's message again (retry, deferral): no record written
    task_type: str = ""  # a new task's type: the name its metrics go under


def submit(client: redis.Redis, submission: Submission, broker_list: str, queue_lists: list[str],
           message: str, record_ttl: int) -> tuple[Submitted, str]:
    """Run SUBMIT (one round trip): ``message`` goes onto ``broker_list`` and the record is written,
    or neither.  Returns the outcome and, for SAME and CONFLICT, the key's first task id (for
    FULL, the number waiting).  Safe to re-send: the submission's token answers NEW again."""
    owner_index = keys.owner_index_key(submission.user_id) if submission.user_id is not None else ""
    unused = keys.counters_key()  # stands in for an absent owner index or key: ARGV says so
    reply = _script(client, SUBMIT)(
        keys=[keys.guard_key(submission.task_id), keys.record_key(submission.task_id), keys.counters_key(),
              broker_list, owner_index or unused, submission.idempotency_key or unused,
              keys.scheduled_key(), keys.scheduled_messages_key(), keys.metrics_key(), keys.recent_key(),
              *queue_lists],
        args=[submission.pending_json, record_ttl, submission.task_id, repr(submission.created),
              repr(submission.created - record_ttl), submission.token, message, submission.queue_bound,
              "1" if owner_index else "", submission.fingerprint if submission.idempotency_key else "",
              "" if submission.due is None else repr(submission.due), repr(time.time()),
              "1" if submission.republish else "", submission.task_type, keys.RECENT_TASKS_KEPT],
        client=client)
    return Submitted(_text(reply[0])), _text(reply[1]) if len(reply) > 1 else ""


def promote(client: redis.Redis, now: float, limit: int = 100) -> int:
    """Run PROMOTE (one round trip): push up to ``limit`` due delayed messages; how many were."""
    prefix = keys.guard_key("")
    return int(_script(client, PROMOTE)(keys=[keys.scheduled_key(), keys.scheduled_messages_key()],
                                        args=[repr(now), limit, prefix], client=client))


class Cancel(enum.Enum):
    """What CANCEL did."""

    ENDED = 1  # the record is final now
    ASKED = 2  # running: its holder cancels the coroutine within about a second
    FINAL = 0  # already final: nothing to do
    UNKNOWN = -1  # no such task (never submitted, or its record expired)


def cancel(client: redis.Redis, task_id: str, final_json: str, record_ttl: int, token: str,
           state: str = "CANCELLED", dead_owner_prefix: str = "", *, task_type: str) -> Cancel:
    """Run CANCEL (one round trip); safe to re-send with the same ``token``."""
    reply = _script(client, CANCEL)(
        keys=[keys.guard_key(task_id), keys.record_key(task_id), keys.counters_key(),
              keys.task_lock_key(task_id), keys.scheduled_key(), keys.scheduled_messages_key(),
              keys.metrics_key(), keys.recent_failures_key()],
        args=[final_json, record_ttl, token, state, dead_owner_prefix, keys.result_channel(task_id),
              task_type, task_id, repr(time.time()), keys.RECENT_FAILURES_KEPT],
        client=client)
    return Cancel(int(reply))


def ask_release(client: redis.Redis, task_ids: list[str], owner_prefix: str) -> int:
    """Run ASK_RELEASE for each task (one pipelined round trip); returns how many were asked."""
    script = _script(client, ASK_RELEASE)
    with client.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            script(keys=[keys.guard_key(task_id)], args=[owner_prefix], client=pipe)
        return sum(int(reply) for reply in pipe.execute())


def lose_nodes(client: redis.Redis, names: list[str], now: float) -> list[str]:
    """Run LOSE_NODES (one round trip): the names of ``names`` moved from the registry to the lost."""
    reply = _script(client, LOSE_NODES)(
        keys=[keys.nodes_key(), keys.lost_nodes_key(), *(keys.node_key(name) for name in names)],
        args=[repr(now), *names], client=client)
    return [_text(name) for name in reply]


def drop_defer(client: redis.Redis, task_id: str, token: str) -> bool:
    """Run DROP_DEFER (one round trip): True when the marker held ``token`` and is gone."""
    return bool(_script(client, DROP_DEFER)(keys=[keys.defer_key(task_id)], args=[token], client=client))
