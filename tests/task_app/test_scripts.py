"""The guard's Lua scripts against the real Redis: claim, defer, renew, fenced finish and write."""

from __future__ import annotations

import uuid

import pytest

from easyrag.task_app import keys, scripts
from easyrag.task_app.records import TaskRecord, TaskStatus
from tests.support.waiting import wait_until

UNACKED_INDEX = "easyrag-test:unacked_index"
DEFER_TTL_MS = 4000


def _new_task():
    return str(uuid.uuid4())


def _record_json(task_id, worker, status=TaskStatus.RUNNING):
    return TaskRecord(task_id=task_id, task_type="t", status=status, worker=worker).to_json()


def _claim(client, task_id, owner="w1:1:a", lock_ttl_ms=10_000, carried="", new_token="t-new", retries=0,
           guarded_publish=False, now=1000.0, expires=None):
    return scripts.claim(client, task_id, owner, lock_ttl_ms, _record_json(task_id, owner),
                         carried, new_token, DEFER_TTL_MS, retries=retries, guarded_publish=guarded_publish,
                         now=now, expires=expires,
                         expired_json=_record_json(task_id, None, TaskStatus.CANCELLED) if expires else "",
                         record_ttl=600, task_type="t")


def _renew(client, task_id, lock_value, lock_ttl_ms=10_000, tag="", now=1000.0):
    return scripts.renew(client, scripts.Renewing(task_id, lock_value, lock_ttl_ms, tag, UNACKED_INDEX), now)


def _finish(client, task_id, lock_value, state, record_json, cancelled_json="", next_retries=1):
    return scripts.finish(client, task_id, lock_value, state, record_json, 600, cancelled_json,
                          next_retries, task_type="t").value


def _write(client, task_id, lock_value, record_json):
    return scripts.write(client, task_id, lock_value, record_json)


def _cancel(client, task_id, token="c1", state="CANCELLED", dead_owner_prefix=""):
    final = TaskRecord(task_id=task_id, task_type="t", status=TaskStatus(state),
                       message=f"by {token}").to_json()
    return scripts.cancel(client, task_id, final, 600, token, state, dead_owner_prefix, task_type="t")


def _recorded_status(client, task_id):
    return TaskRecord.from_json(client.get(keys.record_key(task_id))).status.value


def _wait_lock_gone(client, task_id):
    wait_until(lambda: not client.exists(keys.task_lock_key(task_id)), timeout=5, message="lock expiry")


def test_first_claim_takes_lock_with_fence_1_and_records_running(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    assert (claim.outcome, claim.lock_value, claim.crashes, claim.cancel_requested) == ("OK", "1:w1:1:a", 0,
                                                                                         False)
    assert redis_client.get(keys.task_lock_key(task_id)) == "1:w1:1:a"
    assert 9_000 < redis_client.pttl(keys.task_lock_key(task_id)) <= 10_000
    guard = redis_client.hgetall(keys.guard_key(task_id))
    assert (guard["state"], guard["fence"], guard["owner"]) == ("RUNNING", "1", "w1:1:a")
    assert guard.get("crashes", "0") == "0"
    assert redis_client.get(keys.record_key(task_id)) == _record_json(task_id, "w1:1:a")
    # a live task's keys never expire, however long it runs
    assert redis_client.ttl(keys.record_key(task_id)) == redis_client.ttl(keys.guard_key(task_id)) == -1
    assert not redis_client.exists(keys.defer_key(task_id))
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "running": "1"}


def test_claim_while_lock_is_held_is_busy_defers_and_sets_marker_to_its_token(redis_client):
    task_id = _new_task()
    _claim(redis_client, task_id)
    record = redis_client.get(keys.record_key(task_id))
    busy = _claim(redis_client, task_id, owner="w2:2:b", new_token="t1")
    assert (busy.outcome, busy.must_defer) == ("BUSY", True)
    assert 9_000 < busy.lock_ttl_ms <= 10_000
    assert redis_client.get(keys.defer_key(task_id)) == "t1"
    assert 0 < redis_client.pttl(keys.defer_key(task_id)) <= DEFER_TTL_MS
    assert redis_client.get(keys.task_lock_key(task_id)) == "1:w1:1:a"
    assert redis_client.get(keys.record_key(task_id)) == record
    assert redis_client.hget(keys.guard_key(task_id), "fence") == "1"


@pytest.mark.parametrize("carried", ["", "t-other"])
def test_busy_claim_without_the_markers_token_is_dropped_and_keeps_the_marker(redis_client, carried):
    task_id = _new_task()
    _claim(redis_client, task_id)
    _claim(redis_client, task_id, owner="w2:2:b", new_token="t1")
    duplicate = _claim(redis_client, task_id, owner="w3:3:c", carried=carried, new_token="t2")
    assert (duplicate.outcome, duplicate.must_defer) == ("BUSY", False)
    assert redis_client.get(keys.defer_key(task_id)) == "t1"
    assert redis_client.get(keys.task_lock_key(task_id)) == "1:w1:1:a"


def test_busy_claim_carrying_the_markers_token_defers_again_and_replaces_the_marker(redis_client):
    task_id = _new_task()
    _claim(redis_client, task_id)
    _claim(redis_client, task_id, owner="w2:2:b", new_token="t1")
    deferral = _claim(redis_client, task_id, owner="w2:2:b", carried="t1", new_token="t3")
    assert (deferral.outcome, deferral.must_defer) == ("BUSY", True)
    assert redis_client.get(keys.defer_key(task_id)) == "t3"
    stale = _claim(redis_client, task_id, owner="w2:2:b", carried="t1", new_token="t4")
    assert stale.must_defer is False  # t1 was replaced: its copy is a duplicate now
    assert redis_client.get(keys.defer_key(task_id)) == "t3"


@pytest.mark.parametrize("state", ["COMPLETED", "CANCELLED"])
def test_finish_records_final_state_releases_lock_and_later_claims_are_done(redis_client, state):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    final = _record_json(task_id, "w1:1:a", status=TaskStatus(state))
    assert _finish(redis_client, task_id, claim.lock_value, state, final) == 1
    assert not redis_client.exists(keys.task_lock_key(task_id))
    assert not redis_client.exists(keys.guard_key(task_id))  # ended: the final record is its one key
    assert _recorded_status(redis_client, task_id) == state
    assert redis_client.get(keys.record_key(task_id)) == final
    assert 0 < redis_client.ttl(keys.record_key(task_id)) <= 600  # final: kept result_ttl
    assert redis_client.hget(keys.counters_key(), "running") == "0"
    assert redis_client.hget(keys.counters_key(), state.lower()) == "1"

    again = _claim(redis_client, task_id, owner="w2:2:b")
    assert (again.outcome, again.state) == ("DONE", state)
    assert not redis_client.exists(keys.task_lock_key(task_id))
    assert redis_client.get(keys.record_key(task_id)) == final
    assert not redis_client.exists(keys.guard_key(task_id))  # a DONE claim writes nothing


def test_finish_retrying_releases_lock_and_next_claim_takes_fence_2_without_a_crash(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    retrying = _record_json(task_id, "w1:1:a", status=TaskStatus.RETRYING)
    assert _finish(redis_client, task_id, claim.lock_value, "RETRYING", retrying) == 1
    assert not redis_client.exists(keys.task_lock_key(task_id))
    assert redis_client.hget(keys.guard_key(task_id), "state") == "RETRYING"
    assert redis_client.get(keys.record_key(task_id)) == retrying
    assert redis_client.ttl(keys.record_key(task_id)) == redis_client.ttl(keys.guard_key(task_id)) == -1

    retry = _claim(redis_client, task_id, retries=1)  # the retry's own message
    assert (retry.outcome, retry.lock_value, retry.crashes) == ("OK", "2:w1:1:a", 0)
    assert redis_client.get(keys.task_lock_key(task_id)) == "2:w1:1:a"
    assert redis_client.hget(keys.guard_key(task_id), "state") == "RUNNING"
    assert redis_client.hget(keys.guard_key(task_id), "crashes") in (None, "0")


def test_holder_released_for_retry_can_neither_write_nor_finish_again(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    retrying = _record_json(task_id, "w1:1:a", status=TaskStatus.RETRYING)
    assert _finish(redis_client, task_id, claim.lock_value, "RETRYING", retrying) == 1
    # its fence is still the current one until the retry claims, yet it is no longer RUNNING
    assert _write(redis_client, task_id, claim.lock_value, _record_json(task_id, "late")) is False
    completed = _record_json(task_id, "late", status=TaskStatus.COMPLETED)
    assert _finish(redis_client, task_id, claim.lock_value, "COMPLETED", completed) == 0
    assert redis_client.get(keys.record_key(task_id)) == retrying
    assert redis_client.hget(keys.guard_key(task_id), "state") == "RETRYING"
    assert redis_client.hgetall(keys.counters_key()) == {"running": "0", "pending": "1", "total": "1"}


def test_claim_after_dead_holders_lock_expired_counts_a_crash_and_fences_out_the_stale_holder(redis_client):
    task_id = _new_task()
    dead = _claim(redis_client, task_id, owner="w1:1:a", lock_ttl_ms=50)
    _wait_lock_gone(redis_client, task_id)
    takeover = _claim(redis_client, task_id, owner="w2:2:b")
    assert (takeover.outcome, takeover.lock_value, takeover.crashes) == ("OK", "2:w2:2:b", 1)
    assert redis_client.hget(keys.guard_key(task_id), "crashes") == "1"
    record = redis_client.get(keys.record_key(task_id))
    assert record == _record_json(task_id, "w2:2:b")

    zombie = _record_json(task_id, "zombie", status=TaskStatus.COMPLETED)
    assert _finish(redis_client, task_id, dead.lock_value, "COMPLETED", zombie) == 0
    assert _write(redis_client, task_id, dead.lock_value, zombie) is False
    assert redis_client.get(keys.record_key(task_id)) == record
    assert redis_client.get(keys.task_lock_key(task_id)) == "2:w2:2:b"
    assert 9_000 < redis_client.pttl(keys.task_lock_key(task_id)) <= 10_000
    guard = redis_client.hgetall(keys.guard_key(task_id))
    assert (guard["state"], guard["fence"], guard["owner"]) == ("RUNNING", "2", "w2:2:b")


def test_renew_by_holder_returns_1_and_resets_the_lock_ttl(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id, lock_ttl_ms=2_000)
    assert _renew(redis_client, task_id, claim.lock_value, lock_ttl_ms=10_000) == 1
    assert 9_000 < redis_client.pttl(keys.task_lock_key(task_id)) <= 10_000
    assert redis_client.get(keys.task_lock_key(task_id)) == claim.lock_value


def test_renew_after_lapse_without_takeover_reacquires_the_lock(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id, lock_ttl_ms=50)
    _wait_lock_gone(redis_client, task_id)
    assert _renew(redis_client, task_id, claim.lock_value) == 1
    assert redis_client.get(keys.task_lock_key(task_id)) == claim.lock_value
    assert 9_000 < redis_client.pttl(keys.task_lock_key(task_id)) <= 10_000
    assert redis_client.hget(keys.guard_key(task_id), "fence") == "1"


def test_renew_after_takeover_returns_minus_1_and_leaves_the_new_lock_and_unacked_index(redis_client):
    task_id = _new_task()
    old = _claim(redis_client, task_id, lock_ttl_ms=50)
    _wait_lock_gone(redis_client, task_id)
    new = _claim(redis_client, task_id, owner="w2:2:b", lock_ttl_ms=5_000)
    redis_client.zadd(UNACKED_INDEX, {"tag-1": 1.0})
    assert _renew(redis_client, task_id, old.lock_value, lock_ttl_ms=10_000, tag="tag-1", now=2000.0) == -1
    assert redis_client.get(keys.task_lock_key(task_id)) == new.lock_value
    assert 0 < redis_client.pttl(keys.task_lock_key(task_id)) <= 5_000
    assert redis_client.zscore(UNACKED_INDEX, "tag-1") == 1.0


def test_renew_returns_2_when_cancel_was_requested(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id, lock_ttl_ms=2_000)
    redis_client.hset(keys.guard_key(task_id), "cancel", "1")
    assert _renew(redis_client, task_id, claim.lock_value) == 2
    assert 9_000 < redis_client.pttl(keys.task_lock_key(task_id)) <= 10_000  # renewed all the same


def test_renew_refreshes_existing_unacked_score_but_never_adds_a_missing_member(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    redis_client.zadd(UNACKED_INDEX, {"tag-1": 1.0})
    assert _renew(redis_client, task_id, claim.lock_value, tag="tag-1", now=1234.5) == 1
    assert redis_client.zscore(UNACKED_INDEX, "tag-1") == 1234.5
    assert _renew(redis_client, task_id, claim.lock_value, tag="tag-acked", now=1300.0) == 1
    assert redis_client.zscore(UNACKED_INDEX, "tag-acked") is None
    assert redis_client.zrange(UNACKED_INDEX, 0, -1, withscores=True) == [("tag-1", 1234.5)]


def test_write_by_holder_replaces_the_record_and_is_refused_after_finish(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    assert _write(redis_client, task_id, claim.lock_value, '{"progress":50}') is True
    assert redis_client.get(keys.record_key(task_id)) == '{"progress":50}'
    assert redis_client.ttl(keys.record_key(task_id)) == -1
    final = _record_json(task_id, "w1:1:a", status=TaskStatus.COMPLETED)
    assert _finish(redis_client, task_id, claim.lock_value, "COMPLETED", final) == 1
    assert _write(redis_client, task_id, claim.lock_value, '{"progress":60}') is False
    assert redis_client.get(keys.record_key(task_id)) == final


def test_finish_retrying_after_a_cancel_request_records_cancelled_instead(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    assert _cancel(redis_client, task_id) is scripts.Cancel.ASKED  # running: only flagged
    retrying = _record_json(task_id, "w1:1:a", status=TaskStatus.RETRYING)
    cancelled = _record_json(task_id, "w1:1:a", status=TaskStatus.CANCELLED)
    assert _finish(redis_client, task_id, claim.lock_value, "RETRYING", retrying, cancelled) == 2
    assert _recorded_status(redis_client, task_id) == "CANCELLED"
    assert not redis_client.exists(keys.guard_key(task_id))
    assert redis_client.get(keys.record_key(task_id)) == cancelled
    assert 0 < redis_client.ttl(keys.record_key(task_id)) <= 600
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "running": "0", "cancelled": "1"}
    assert _claim(redis_client, task_id, owner="w2:2:b").outcome == "DONE"  # the retry message is dropped


BROKER_LIST = "easyrag-test:queue:2"
QUEUE_LISTS = [f"easyrag-test:queue:{step}" for step in range(4)]


def _submit(client, task_id, user_id=None, created=1000.0, token="s1", bound=0, key="", fingerprint="f1",
            message=None):
    submission = scripts.Submission(task_id, _record_json(task_id, None, TaskStatus.PENDING), user_id,
                                    created, bound, key, fingerprint, token, task_type="t")
    return scripts.submit(client, submission, BROKER_LIST, QUEUE_LISTS, message or f"message {task_id}", 600)


def test_submit_queues_the_message_and_records_pending_without_expiry_and_indexes_the_owner(redis_client):
    task_id, index = _new_task(), keys.owner_index_key("u1")
    assert _submit(redis_client, task_id, "u1", created=1000.0) == (scripts.Submitted.NEW, "")
    assert redis_client.lrange(BROKER_LIST, 0, -1) == [f"message {task_id}"]
    assert redis_client.hget(keys.guard_key(task_id), "state") == "PENDING"
    assert redis_client.ttl(keys.record_key(task_id)) == redis_client.ttl(keys.guard_key(task_id)) == -1
    assert redis_client.zrange(index, 0, -1, withscores=True) == [(task_id, 1000.0)]
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "pending": "1"}


def test_submit_trims_index_entries_older_than_the_record_ttl(redis_client):
    index = keys.owner_index_key("u1")
    old, recent = _new_task(), _new_task()
    _submit(redis_client, old, "u1", created=1000.0)
    _submit(redis_client, recent, "u1", created=1000.0 + 601)  # 600 s ttl: the old one goes
    assert redis_client.zrange(index, 0, -1) == [recent]


def test_submit_at_the_bound_writes_nothing(redis_client):
    redis_client.lpush(QUEUE_LISTS[0], "a")
    redis_client.lpush(QUEUE_LISTS[3], "b")
    task_id = _new_task()
    assert _submit(redis_client, task_id, "u1", bound=2) == (scripts.Submitted.FULL, "2")
    assert not redis_client.exists(keys.guard_key(task_id), keys.record_key(task_id),
                                   keys.owner_index_key("u1"), BROKER_LIST, keys.counters_key())
    assert _submit(redis_client, task_id, "u1", bound=3)[0] is scripts.Submitted.NEW


def test_an_idempotency_key_names_its_first_task_until_the_record_goes(redis_client):
    key = keys.idempotency_key("t", "u1", "order-42")
    first, again, other = _new_task(), _new_task(), _new_task()
    assert _submit(redis_client, first, "u1", key=key, fingerprint="f1")[0] is scripts.Submitted.NEW
    assert _submit(redis_client, again, "u1", key=key, fingerprint="f1", token="s2") == (
        scripts.Submitted.SAME, first)
    assert _submit(redis_client, other, "u1", key=key, fingerprint="f2", token="s3") == (
        scripts.Submitted.CONFLICT, first)
    assert redis_client.llen(BROKER_LIST) == 1  # repeats and conflicts queue nothing
    assert not redis_client.exists(keys.guard_key(again), keys.guard_key(other))
    assert redis_client.ttl(key) == -1  # kept while the task lives
    _cancel(redis_client, first)
    assert 0 < redis_client.ttl(key) <= 600  # then exactly as long as its record
    assert abs(redis_client.ttl(key) - redis_client.ttl(keys.record_key(first))) <= 1


# --- every step is safe to run twice: redis-py re-sends a command whose reply was lost ------------

def test_claim_sent_twice_answers_the_same_claim_without_counting_a_crash(redis_client):
    task_id = _new_task()
    first = _claim(redis_client, task_id, owner="w1:1:a")
    again = _claim(redis_client, task_id, owner="w1:1:a")
    assert again == first
    guard = redis_client.hgetall(keys.guard_key(task_id))
    assert (guard["fence"], guard.get("crashes", "0")) == ("1", "0")
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "running": "1"}


def test_next_attempts_own_message_meeting_the_running_attempt_defers_even_past_another_deferral(
        redis_client):
    """The retry's message is published before the holder records RETRYING: it must never be
    dropped as a duplicate, or the RETRYING task would have no message left."""
    task_id = _new_task()
    _claim(redis_client, task_id, retries=0)
    _claim(redis_client, task_id, owner="w2:2:b", new_token="t1", retries=0)  # a duplicate's deferral
    retry = _claim(redis_client, task_id, owner="w3:3:c", new_token="t2", retries=1)
    assert (retry.outcome, retry.must_defer) == ("BUSY", True)
    assert redis_client.get(keys.defer_key(task_id)) == "t2"


def test_busy_claim_sent_twice_still_defers(redis_client):
    task_id = _new_task()
    _claim(redis_client, task_id)
    first = _claim(redis_client, task_id, owner="w2:2:b", new_token="t1")
    again = _claim(redis_client, task_id, owner="w2:2:b", new_token="t1")
    assert first.must_defer and again.must_defer


def test_finish_sent_twice_answers_recorded_and_counts_once(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    final = _record_json(task_id, "w1:1:a", status=TaskStatus.COMPLETED)
    assert _finish(redis_client, task_id, claim.lock_value, "COMPLETED", final) == 1
    assert _finish(redis_client, task_id, claim.lock_value, "COMPLETED", final) == 1
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "running": "0", "completed": "1"}


def test_cancel_sent_twice_answers_the_same_and_counts_once(redis_client):
    task_id = _new_task()
    _submit(redis_client, task_id)
    assert _cancel(redis_client, task_id, token="c1") is scripts.Cancel.ENDED
    assert _cancel(redis_client, task_id, token="c1") is scripts.Cancel.ENDED
    assert _cancel(redis_client, task_id, token="c2") is scripts.Cancel.FINAL  # another call: already final
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "pending": "0", "cancelled": "1"}


def test_submit_sent_twice_answers_new_and_queues_and_counts_once(redis_client):
    task_id = _new_task()
    assert _submit(redis_client, task_id, "u1", token="s1")[0] is scripts.Submitted.NEW
    assert _submit(redis_client, task_id, "u1", token="s1")[0] is scripts.Submitted.NEW
    assert redis_client.llen(BROKER_LIST) == 1
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "pending": "1"}
    # another call with a known id: a re-publish, the message only (its guard decides at claim)
    assert _submit(redis_client, task_id, "u1", token="s2")[0] is scripts.Submitted.KNOWN
    assert redis_client.llen(BROKER_LIST) == 2
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "pending": "1"}


# --- what CLAIM does with copies that must not run ---------------------------------------------

def test_guarded_copy_of_a_task_whose_record_expired_is_gone_not_new(redis_client):
    task_id = _new_task()
    assert _claim(redis_client, task_id, guarded_publish=True).outcome == "GONE"
    assert not redis_client.exists(keys.guard_key(task_id), keys.task_lock_key(task_id),
                                   keys.record_key(task_id))
    assert _claim(redis_client, task_id, guarded_publish=False).outcome == "OK"  # send_task: first seen


def test_copy_of_an_attempt_before_the_current_retry_is_stale(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id, retries=0)
    retrying = _record_json(task_id, "w1:1:a", status=TaskStatus.RETRYING)
    assert _finish(redis_client, task_id, claim.lock_value, "RETRYING", retrying, next_retries=1) == 1
    assert _claim(redis_client, task_id, owner="w2:2:b", retries=0).outcome == "STALE"
    assert redis_client.hget(keys.guard_key(task_id), "state") == "RETRYING"
    retry = _claim(redis_client, task_id, owner="w2:2:c", retries=1)
    assert (retry.outcome, retry.retries) == ("OK", 1)


def test_crash_recovery_by_an_older_copy_keeps_the_guards_attempt_count(redis_client):
    task_id = _new_task()
    first = _claim(redis_client, task_id, retries=0, lock_ttl_ms=10_000)
    retrying = _record_json(task_id, "w1:1:a", status=TaskStatus.RETRYING)
    _finish(redis_client, task_id, first.lock_value, "RETRYING", retrying, next_retries=1)
    _claim(redis_client, task_id, owner="w1:1:b", retries=1, lock_ttl_ms=50)  # the retry; its worker dies
    _wait_lock_gone(redis_client, task_id)
    recovery = _claim(redis_client, task_id, owner="w2:2:c", retries=0)  # an old copy comes back
    assert (recovery.outcome, recovery.retries, recovery.crashes) == ("OK", 1, 1)


def test_copy_delivered_after_its_expiry_ends_cancelled_unless_the_task_had_started(redis_client):
    task_id = _new_task()
    _submit(redis_client, task_id)
    assert _claim(redis_client, task_id, now=1000.0, expires=999.0).outcome == "EXPIRED"
    assert _recorded_status(redis_client, task_id) == "CANCELLED"
    assert not redis_client.exists(keys.guard_key(task_id))
    assert TaskRecord.from_json(redis_client.get(keys.record_key(task_id))).status is TaskStatus.CANCELLED
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "pending": "0", "cancelled": "1"}

    started = _new_task()
    _claim(redis_client, started, lock_ttl_ms=50, now=1000.0, expires=1001.0)
    _wait_lock_gone(redis_client, started)  # its worker died; the copy comes back after the expiry
    claim = _claim(redis_client, started, owner="w2:2:b", now=2000.0, expires=1001.0)
    assert claim.outcome == "OK"
    # ...and its retry, due after the expiry, runs too: only a task that never started expires
    retrying = _record_json(started, "w2:2:b", status=TaskStatus.RETRYING)
    _finish(redis_client, started, claim.lock_value, "RETRYING", retrying, next_retries=1)
    retry = _claim(redis_client, started, owner="w2:2:c", retries=1, now=3000.0, expires=1001.0)
    assert retry.outcome == "OK"


# --- ending a task from outside, and giving it back ----------------------------------------------

def test_cancel_of_a_running_task_whose_lock_expired_ends_it_at_once(redis_client):
    task_id = _new_task()
    _claim(redis_client, task_id, lock_ttl_ms=50)
    _wait_lock_gone(redis_client, task_id)
    assert _cancel(redis_client, task_id) is scripts.Cancel.ENDED
    assert _recorded_status(redis_client, task_id) == "CANCELLED"
    assert not redis_client.exists(keys.guard_key(task_id))
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "running": "0", "cancelled": "1"}
    assert _claim(redis_client, task_id, owner="w2:2:b").outcome == "DONE"


def test_ending_a_task_whose_holder_was_killed_on_a_node_releases_its_lock(redis_client):
    task_id = _new_task()
    _claim(redis_client, task_id, owner="node-a@h:41:x")
    other_node = _cancel(redis_client, task_id, state="TIMEOUT", dead_owner_prefix="node-b@h:")
    assert other_node is scripts.Cancel.ASKED
    assert _cancel(redis_client, task_id, token="c2", state="TIMEOUT",
                   dead_owner_prefix="node-a@h:") is scripts.Cancel.ENDED
    assert not redis_client.exists(keys.task_lock_key(task_id))
    assert _recorded_status(redis_client, task_id) == "TIMEOUT"
    assert not redis_client.exists(keys.guard_key(task_id))
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "running": "0", "timeout": "1"}


def test_release_request_reaches_the_holder_and_finish_pending_puts_the_task_back(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id, owner="node-a@h:41:x")
    assert scripts.ask_release(redis_client, [task_id], "node-b@h:") == 0
    assert scripts.ask_release(redis_client, [task_id], "node-a@h:") == 1
    assert _renew(redis_client, task_id, claim.lock_value) == 3
    pending = _record_json(task_id, None, status=TaskStatus.PENDING)
    assert _finish(redis_client, task_id, claim.lock_value, "PENDING", pending, "x") == 1
    guard = redis_client.hgetall(keys.guard_key(task_id))
    assert (guard["state"], guard.get("crashes", "0"), "release" in guard) == ("PENDING", "0", False)
    assert redis_client.ttl(keys.guard_key(task_id)) == -1
    assert not redis_client.exists(keys.task_lock_key(task_id))
    assert redis_client.hgetall(keys.counters_key()) == {"total": "1", "running": "0", "pending": "1"}
    again = _claim(redis_client, task_id, owner="node-c@h:7:y")
    assert (again.outcome, again.crashes) == ("OK", 0)


def test_progress_replaces_only_the_records_tail_and_is_fenced(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    running = TaskRecord(task_id=task_id, task_type="t", status=TaskStatus.RUNNING,
                         task_data={"progress": 1, "text": 'x,"progress":2'}, result={"progress": 3})
    assert _write(redis_client, task_id, claim.lock_value, running.to_json())
    update = running.replace(progress=40, message='step "2", ,"progress":99')
    assert scripts.progress(redis_client, task_id, claim.lock_value, update.progress_tail()) is True
    assert redis_client.get(keys.record_key(task_id)) == update.to_json()  # the whole record, intact
    final = _record_json(task_id, "w1:1:a", status=TaskStatus.COMPLETED)
    _finish(redis_client, task_id, claim.lock_value, "COMPLETED", final)
    assert scripts.progress(redis_client, task_id, claim.lock_value, update.progress_tail()) is False
    assert redis_client.get(keys.record_key(task_id)) == final


def test_a_finished_task_whose_guard_is_gone_is_known_to_submit_and_never_recorded_again(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    final = _record_json(task_id, "w1:1:a", status=TaskStatus.COMPLETED)
    _finish(redis_client, task_id, claim.lock_value, "COMPLETED", final)
    assert _submit(redis_client, task_id, token="s9")[0] is scripts.Submitted.KNOWN
    assert redis_client.get(keys.record_key(task_id)) == final  # still the final record
    assert not redis_client.exists(keys.guard_key(task_id))
    assert _claim(redis_client, task_id, owner="w3:3:c", guarded_publish=True).outcome == "DONE"


# --- the metrics and the dashboard's indexes, kept by the same steps ---

def _metrics(client) -> dict[str, str]:
    return client.hgetall(keys.metrics_key())


def test_each_step_counts_its_metric_by_task_type_and_a_resend_counts_nothing_twice(redis_client):
    task_id = _new_task()
    assert _submit(redis_client, task_id)[0] is scripts.Submitted.NEW
    assert _submit(redis_client, task_id)[0] is scripts.Submitted.NEW  # a re-send of the same call
    claim = _claim(redis_client, task_id)
    _claim(redis_client, task_id)  # a re-send of this very claim
    final = _record_json(task_id, "w1:1:a", status=TaskStatus.COMPLETED)
    assert scripts.finish(redis_client, task_id, claim.lock_value, "COMPLETED", final, 600, task_type="t",
                          runtime=0.3) is scripts.Finish.RECORDED
    assert scripts.finish(redis_client, task_id, claim.lock_value, "COMPLETED", final, 600, task_type="t",
                          runtime=0.3) is scripts.Finish.RECORDED  # re-sent
    assert _metrics(redis_client) == {"sent|t": "1", "started|t": "1", "succeeded|t": "1",
                                      "runtime|0.5|t": "1", "runtime_sum|t": "0.3"}


def test_the_runtime_bucket_is_the_first_bound_at_or_above_the_run():
    assert [scripts.runtime_bucket(s) for s in (0, 0.005, 0.0051, 3599, 3600.5)] == [
        "0.005", "0.005", "0.01", "3600.0", "+Inf"]


@pytest.mark.parametrize(("state", "metrics"), [
    ("FAILED", {"failed|t": "1"}), ("TIMEOUT", {"failed|t": "1", "timeouts|t": "1"}),
    ("RETRYING", {"retried|t": "1"}), ("CANCELLED", {"revoked|t": "1"}), ("PENDING", {})])
def test_finish_counts_the_state_it_records_and_failures_join_the_recent_failures(redis_client, state,
                                                                                  metrics):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    _finish(redis_client, task_id, claim.lock_value, state, _record_json(task_id, None, TaskStatus(state)))
    assert _metrics(redis_client) == {"sent|t": "1", "started|t": "1", **metrics}  # sent: first seen by CLAIM
    failed = redis_client.zrange(keys.recent_failures_key(), 0, -1)
    assert failed == ([task_id] if state in ("FAILED", "TIMEOUT") else [])


@pytest.mark.parametrize("state", ["CANCELLED", "TIMEOUT", "FAILED"])
def test_cancel_counts_the_final_state_it_writes(redis_client, state):
    task_id = _new_task()
    _submit(redis_client, task_id)
    assert _cancel(redis_client, task_id, state=state) is scripts.Cancel.ENDED
    assert _cancel(redis_client, task_id, state=state) is scripts.Cancel.ENDED  # a re-send: not counted again
    expected = {"CANCELLED": {"revoked|t": "1"}, "TIMEOUT": {"failed|t": "1", "timeouts|t": "1"},
                "FAILED": {"failed|t": "1"}}[state]
    assert _metrics(redis_client) == {"sent|t": "1", **expected}
    failed = redis_client.zrange(keys.recent_failures_key(), 0, -1)
    assert failed == ([] if state == "CANCELLED" else [task_id])


def test_claim_counts_crashes_and_every_delivery_it_drops_or_defers(redis_client):
    task_id = _new_task()
    _claim(redis_client, task_id, lock_ttl_ms=50)
    _wait_lock_gone(redis_client, task_id)
    assert _claim(redis_client, task_id, owner="w2:2:b").outcome == "OK"  # the first holder died
    assert _claim(redis_client, task_id, owner="w3:3:c").outcome == "BUSY"
    final = _record_json(task_id, None, TaskStatus.COMPLETED)
    lock_value = redis_client.get(keys.task_lock_key(task_id))
    _finish(redis_client, task_id, lock_value, "COMPLETED", final)
    assert _claim(redis_client, task_id, owner="w4:4:d").outcome == "DONE"
    metrics = _metrics(redis_client)
    assert (metrics["sent|t"], metrics["started|t"], metrics["crashes|t"]) == ("1", "2", "1")
    assert metrics["duplicate_deliveries"] == "2"
    assert redis_client.zrange(keys.recent_key(), 0, -1) == [task_id]  # first seen by CLAIM


def test_the_recent_indexes_keep_only_the_newest(redis_client, monkeypatch):
    monkeypatch.setattr(keys, "RECENT_TASKS_KEPT", 3)
    monkeypatch.setattr(keys, "RECENT_FAILURES_KEPT", 2)
    submitted = [_new_task() for _ in range(5)]
    for number, task_id in enumerate(submitted):
        _submit(redis_client, task_id, created=1000.0 + number, token=f"s{number}")
    assert redis_client.zrange(keys.recent_key(), 0, -1) == submitted[2:]
    for task_id in submitted:
        _cancel(redis_client, task_id, state="FAILED")
    assert redis_client.zrange(keys.recent_failures_key(), 0, -1) == submitted[3:]


@pytest.mark.parametrize("submitted", [True, False])
def test_an_expired_start_counts_revoked_and_no_start(redis_client, submitted):
    task_id = _new_task()
    if submitted:
        _submit(redis_client, task_id)
    assert _claim(redis_client, task_id, now=1000.0, expires=999.0).outcome == "EXPIRED"
    assert _claim(redis_client, task_id, now=1000.0, expires=999.0).outcome == "EXPIRED"  # re-sent
    assert _metrics(redis_client) == {"sent|t": "1", "revoked|t": "1"}
    assert redis_client.zrange(keys.recent_key(), 0, -1) == [task_id]


def test_a_retry_cancelled_meanwhile_counts_revoked_not_retried_and_the_request_counts_nothing(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    assert _cancel(redis_client, task_id) is scripts.Cancel.ASKED  # only flagged: nothing ended yet
    assert _metrics(redis_client) == {"sent|t": "1", "started|t": "1"}
    retrying = _record_json(task_id, "w1:1:a", status=TaskStatus.RETRYING)
    cancelled = _record_json(task_id, "w1:1:a", status=TaskStatus.CANCELLED)
    assert _finish(redis_client, task_id, claim.lock_value, "RETRYING", retrying, cancelled) == 2
    assert _metrics(redis_client) == {"sent|t": "1", "started|t": "1", "revoked|t": "1"}
    assert _cancel(redis_client, task_id, token="c2") is scripts.Cancel.FINAL  # already final: no count
    assert _metrics(redis_client) == {"sent|t": "1", "started|t": "1", "revoked|t": "1"}


def test_a_copy_counts_one_duplicate_however_often_it_is_deferred_and_the_retrys_message_none(redis_client):
    def duplicates() -> int:
        return int(redis_client.hget(keys.metrics_key(), "duplicate_deliveries") or 0)

    task_id = _new_task()
    _claim(redis_client, task_id)
    assert _claim(redis_client, task_id, owner="w2:2:b", new_token="t1").must_defer  # a copy: deferred
    assert duplicates() == 1
    assert _claim(redis_client, task_id, owner="w2:2:c", carried="t1", new_token="t3").must_defer  # again
    assert duplicates() == 1
    assert _claim(redis_client, task_id, owner="w3:3:c", new_token="t4").outcome == "BUSY"  # another copy
    assert duplicates() == 2
    assert _claim(redis_client, task_id, owner="w4:4:d", new_token="t5", retries=1).must_defer  # the retry's
    assert duplicates() == 2
    gone = _new_task()
    assert _claim(redis_client, gone, guarded_publish=True).outcome == "GONE"
    assert duplicates() == 3


def test_a_stale_copy_counts_a_duplicate(redis_client):
    task_id = _new_task()
    claim = _claim(redis_client, task_id)
    retrying = _record_json(task_id, "w1:1:a", status=TaskStatus.RETRYING)
    _finish(redis_client, task_id, claim.lock_value, "RETRYING", retrying, next_retries=1)
    assert _claim(redis_client, task_id, owner="w2:2:b", retries=0).outcome == "STALE"
    assert redis_client.hget(keys.metrics_key(), "duplicate_deliveries") == "1"


def test_lose_nodes_moves_only_nodes_still_registered_and_still_silent(redis_client):
    for name in ("dead", "back", "forgotten"):
        redis_client.sadd(keys.nodes_key(), name)
    redis_client.set(keys.node_key("back"), "{}")  # started again meanwhile
    redis_client.srem(keys.nodes_key(), "forgotten")  # a warm stop forgot it meanwhile
    assert scripts.lose_nodes(redis_client, ["dead", "back", "forgotten"], 1000.0) == ["dead"]
    assert redis_client.zrange(keys.lost_nodes_key(), 0, -1, withscores=True) == [("dead", 1000.0)]
    assert redis_client.smembers(keys.nodes_key()) == {"back"}
