"""The test RedisProxy against the real Redis: transparent, and it loses replies and requests on cue."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.redis_proxy import RedisProxy, _Frames, command, evalsha_of, script_sha
from tests.support.waiting import wait_until


@pytest.fixture
def proxy(redis_test_url: str) -> Iterator[RedisProxy]:
    with RedisProxy(redis_test_url) as running:
        yield running


def _client(proxy: RedisProxy, retries: int, **options: object) -> redis.Redis:
    return redis.Redis.from_url(proxy.url, retry=Retry(NoBackoff(), retries), decode_responses=True,
                                socket_timeout=5, **options)


# redis-py sends incr() as INCRBY <key> 1.


def _key() -> str:
    return f"easyrag-test:proxy:{uuid.uuid4().hex}"


def test_url_names_the_proxy_port_and_the_upstream_database(proxy, redis_test_url):
    db = redis_test_url.rsplit("/", 1)[1]
    assert proxy.url == f"redis://127.0.0.1:{proxy.port}/{db}"


def test_commands_pipelines_and_large_values_pass_through_unchanged(proxy, redis_client):
    client, key = _client(proxy, retries=0), _key()
    big = "x" * 300_000  # many packets each way
    assert client.set(key, big) is True
    assert client.get(key) == big
    with client.pipeline(transaction=False) as pipe:
        for n in range(200):
            pipe.rpush(key + ":list", n)
        pipe.lrange(key + ":list", 0, -1)
        replies = pipe.execute()
    assert replies[:200] == list(range(1, 201))
    assert replies[200] == [str(n) for n in range(200)]
    assert redis_client.get(key) == big  # really on the server, in the same database
    assert proxy.sent(command("SET", key)) == 1
    assert proxy.dropped() == 0


def test_frames_split_pipelined_and_partial_input():
    frames = _Frames(requests=True)
    stream = b"*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\nPING\r\n"
    seen = [value for cut in range(len(stream)) for _, value in frames.feed(stream[cut:cut + 1])]
    assert seen == [[b"INCR", b"k"], [b"PING"], [b"PING"]]
    replies = _Frames()
    resp3 = b"%1\r\n+a\r\n:1\r\n|1\r\n+k\r\n+v\r\n$3\r\nabc\r\n>2\r\n+x\r\n_\r\n*-1\r\n"
    assert [raw for raw, _ in replies.feed(resp3)] == [
        b"%1\r\n+a\r\n:1\r\n", b"|1\r\n+k\r\n+v\r\n$3\r\nabc\r\n", b">2\r\n+x\r\n_\r\n", b"*-1\r\n"]


def test_a_dropped_reply_is_a_connection_error_and_the_command_ran_once(proxy, redis_client):
    client, key = _client(proxy, retries=0), _key()
    rule = proxy.drop_reply(command("INCRBY", key))
    with pytest.raises(redis.ConnectionError):
        client.incr(key)
    assert redis_client.get(key) == "1"
    assert (rule.dropped, rule.armed, proxy.dropped("reply")) == (1, False, 1)
    assert client.incr(key) == 2  # once used up, the rule lets replies through


def test_redis_py_re_sends_a_command_whose_reply_was_lost_so_incr_runs_twice(proxy, redis_client):
    client, key = _client(proxy, retries=1), _key()
    proxy.drop_reply(command("INCRBY", key))
    assert client.incr(key) == 2  # the caller saw no error, and its one INCR counted twice
    assert redis_client.get(key) == "2"
    assert proxy.sent(command("INCRBY", key)) == 2
    assert [drop.reply for drop in proxy.drops] == [b":1\r\n"]


def test_a_dropped_reply_in_a_pipeline_keeps_the_earlier_replies_in_order(proxy, redis_client):
    client, key = _client(proxy, retries=0), _key()
    proxy.drop_reply(command("INCRBY", key + ":b"))
    with pytest.raises(redis.ConnectionError), client.pipeline(transaction=False) as pipe:
        pipe.incr(key + ":a").incr(key + ":b").incr(key + ":c")
        pipe.execute()
    # all three reached the server; the client lost the connection at the second reply
    assert redis_client.mget([key + ":a", key + ":b", key + ":c"]) == ["1", "1", "1"]
    assert proxy.dropped("reply") == 1


def test_evalsha_reply_is_dropped_after_noscript_passes_through(proxy, redis_client):
    key = _key()
    source = f"-- proxy test {uuid.uuid4().hex}\nreturn redis.call('INCR', KEYS[1])"
    client = _client(proxy, retries=1)
    script = client.register_script(source)
    assert script.sha == script_sha(source)
    rule = proxy.drop_reply(evalsha_of(source))
    # EVALSHA → NOSCRIPT (passed through), SCRIPT LOAD, EVALSHA → reply dropped, retried EVALSHA
    assert script(keys=[key]) == 2
    assert redis_client.get(key) == "2"
    assert rule.dropped == 1
    assert proxy.sent(evalsha_of(source)) == 3


def test_dropped_requests_never_reach_the_server_until_the_window_ends(proxy, redis_client):
    client, key = _client(proxy, retries=0), _key()
    rule = proxy.drop_request(command("INCRBY", key), duration_s=1.0)
    for _ in range(2):
        with pytest.raises(redis.ConnectionError):
            client.incr(key)
    assert redis_client.get(key) is None
    assert client.incr(key + ":other") == 1  # other commands pass meanwhile
    wait_until(lambda: not rule.armed, timeout=3, message="the window to end")
    assert client.incr(key) == 1
    assert rule.dropped == 2 and proxy.dropped("request") == 2
    assert proxy.sent(command("INCRBY", key)) == 1


def test_pubsub_passes_through(proxy):
    client = _client(proxy, retries=0)
    pubsub = client.pubsub()
    pubsub.subscribe("easyrag-test:proxy-channel")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    assert client.publish("easyrag-test:proxy-channel", "hello") == 1
    message = pubsub.get_message(timeout=2)
    assert (message["type"], message["data"]) == ("message", "hello")
    pubsub.close()


def test_stop_closes_client_connections(redis_test_url):
    proxy = RedisProxy(redis_test_url).start()
    client = _client(proxy, retries=0)
    assert client.ping() is True
    assert proxy.connections == 1
    proxy.stop()
    with pytest.raises(redis.ConnectionError):
        client.ping()
