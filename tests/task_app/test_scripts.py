"""The guard's Lua scripts against the real Redis: claim, defer, renew, fenced finish and write."""

from __future__ import annotations

import time
import uuid

from easyrag.task_app import keys, scripts
from easyrag.task_app.records import TaskRecord
from tests.support.waiting import wait_until

UNACKED_INDEX = "easyrag-test:unacked_index"


def _keys(task_id):
    return [keys.guard_key(task_id), keys.task_lock_key(task_id), keys.record_key(task_id),
            keys.defer_key(task_id), keys.counters_key()]


def _claim(client, task_id, owner="w1:1:a", lock_ttl_ms=10_000, carried="", new_token="t-new"):
    record = TaskRecord(task_id=task_id, task_type="t", worker=owner).to_json()
    return scripts.claim(client, _keys(task_id), owner, lock_ttl_ms, 600, record, carried, new_token, 4000)


def _renew(client, task_id, lock_value, tag=""):
    return scripts.renew(client, [keys.task_lock_key(task_id), keys.guard_key(task_id), UNACKED_INDEX],
                         lock_value, 10_000, tag, time.time())


def _finish(client, task_id, lock_value, state, worker="w1"):
    record = TaskRecord(task_id=task_id, task_type="t", worker=worker).to_json()
    finish_keys = [keys.guard_key(task_id), keys.task_lock_key(task_id), keys.record_key(task_id),
                   keys.counters_key()]
    return scripts.finish(client, finish_keys, lock_value, state, record, 600)


def test_first_claim_takes_the_lock_and_records_running(redis_client):
    task_id = str(uuid.uuid4())
    claim = _claim(redis_client, task_id)
    assert (claim.outcome, claim.lock_value, claim.crashes) == ("OK", "1:w1:1:a", 0)
    assert redis_client.get(keys.task_lock_key(task_id)) == "1:w1:1:a"
    assert 0 < redis_client.pttl(keys.task_lock_key(task_id)) <= 10_000
    assert redis_client.hget(keys.guard_key(task_id), "state") == "RUNNING"
    assert TaskRecord.from_json(redis_client.get(keys.record_key(task_id))).worker == "w1:1:a"


def test_busy_claims_defer_once_and_only_the_live_deferral_renews_the_marker(redis_client):
    task_id = str(uuid.uuid4())
    _claim(redis_client, task_id)
    first = _claim(redis_client, task_id, owner="w2:2:b", new_token="t1")
    assert (first.outcome, first.must_defer) == ("BUSY", True) and 0 < first.lock_ttl_ms <= 10_000
    assert redis_client.get(keys.defer_key(task_id)) == "t1"
    duplicate = _claim(redis_client, task_id, owner="w2:2:b", new_token="t2")
    assert (duplicate.outcome, duplicate.must_defer) == ("BUSY", False)
    deferral = _claim(redis_client, task_id, owner="w2:2:b", carried="t1", new_token="t3")
    assert (deferral.outcome, deferral.must_defer) == ("BUSY", True)
    assert redis_client.get(keys.defer_key(task_id)) == "t3"


def test_finish_records_the_outcome_releases_the_lock_and_later_claims_are_done(redis_client):
    for state in ("COMPLETED", "CANCELLED"):
        task_id = str(uuid.uuid4())
        claim = _claim(redis_client, task_id)
        assert _finish(redis_client, task_id, claim.lock_value, state) is True
        assert not redis_client.exists(keys.task_lock_key(task_id))
        assert redis_client.hget(keys.guard_key(task_id), "state") == state
        again = _claim(redis_client, task_id)
        assert (again.outcome, again.state) == ("DONE", state)


def test_retrying_release_lets_the_next_delivery_claim_without_a_crash(redis_client):
    task_id = str(uuid.uuid4())
    claim = _claim(redis_client, task_id)
    assert _finish(redis_client, task_id, claim.lock_value, "RETRYING") is True
    retry = _claim(redis_client, task_id)
    assert (retry.outcome, retry.lock_value, retry.crashes) == ("OK", "2:w1:1:a", 0)


def test_claim_after_a_dead_holders_lock_expired_counts_a_crash_and_fences_the_old_holder(redis_client):
    task_id = str(uuid.uuid4())
    dead = _claim(redis_client, task_id, owner="w1:1:a", lock_ttl_ms=50)
    wait_until(lambda: not redis_client.exists(keys.task_lock_key(task_id)), message="lock expiry")
    takeover = _claim(redis_client, task_id, owner="w2:2:b")
    assert (takeover.outcome, takeover.lock_value, takeover.crashes) == ("OK", "2:w2:2:b", 1)
    record_before = redis_client.get(keys.record_key(task_id))
    assert _finish(redis_client, task_id, dead.lock_value, "COMPLETED", worker="zombie") is False
    assert scripts.write(redis_client, [keys.guard_key(task_id), keys.record_key(task_id)],
                         dead.lock_value, "{}", 600) is False
    assert redis_client.get(keys.record_key(task_id)) == record_before
    assert redis_client.get(keys.task_lock_key(task_id)) == "2:w2:2:b"
    assert redis_client.hget(keys.guard_key(task_id), "state") == "RUNNING"


def test_renew_extends_reacquires_a_lapse_and_is_fenced_out_after_a_takeover(redis_client):
    task_id = str(uuid.uuid4())
    claim = _claim(redis_client, task_id, lock_ttl_ms=50)
    wait_until(lambda: not redis_client.exists(keys.task_lock_key(task_id)), message="lock lapse")
    assert _renew(redis_client, task_id, claim.lock_value) == 1  # lapsed, nobody took over
    assert redis_client.get(keys.task_lock_key(task_id)) == claim.lock_value
    assert redis_client.pttl(keys.task_lock_key(task_id)) > 5000
    redis_client.delete(keys.task_lock_key(task_id))
    takeover = _claim(redis_client, task_id, owner="w2:2:b")
    assert _renew(redis_client, task_id, claim.lock_value) == -1
    assert redis_client.get(keys.task_lock_key(task_id)) == takeover.lock_value


def test_renew_reports_a_cancel_request(redis_client):
    task_id = str(uuid.uuid4())
    claim = _claim(redis_client, task_id)
    redis_client.hset(keys.guard_key(task_id), "cancel", "1")
    assert _renew(redis_client, task_id, claim.lock_value) == 2


def test_renew_refreshes_kombus_unacked_score_but_never_recreates_an_entry(redis_client):
    task_id = str(uuid.uuid4())
    claim = _claim(redis_client, task_id)
    redis_client.zadd(UNACKED_INDEX, {"tag-1": 1.0})
    _renew(redis_client, task_id, claim.lock_value, tag="tag-1")
    assert redis_client.zscore(UNACKED_INDEX, "tag-1") > time.time() - 60
    _renew(redis_client, task_id, claim.lock_value, tag="tag-acked")
    assert redis_client.zscore(UNACKED_INDEX, "tag-acked") is None


def test_write_replaces_the_record_only_while_running(redis_client):
    task_id = str(uuid.uuid4())
    claim = _claim(redis_client, task_id)
    write_keys = [keys.guard_key(task_id), keys.record_key(task_id)]
    assert scripts.write(redis_client, write_keys, claim.lock_value, '{"progress":50}', 600) is True
    assert redis_client.get(keys.record_key(task_id)) == '{"progress":50}'
    _finish(redis_client, task_id, claim.lock_value, "COMPLETED")
    assert scripts.write(redis_client, write_keys, claim.lock_value, '{"progress":60}', 600) is False
