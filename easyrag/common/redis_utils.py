"""get_redis_instance(): one pooled Redis client per process, configured by easyrag.config."""

from __future__ import annotations

import logging
import threading

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from easyrag.config import RedisConfig, get_config

logger = logging.getLogger(__name__)


class RedisClient(redis.Redis):
    """redis-py's client with the ``health_check()`` the seed's debugging snippet calls."""

    def health_check(self) -> bool:
        """True when the server answers PING now (one try, on a fresh connection); never raises."""
        pool = self.connection_pool
        connection = pool.connection_class(**{**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)})
        try:
            connection.send_command("PING")
            return connection.read_response() in (b"PONG", "PONG", True)
        except redis.RedisError as error:
            logger.warning("Redis health check failed: %s", error)
            return False
        finally:
            connection.disconnect()


_lock = threading.Lock()
_client: RedisClient | None = None
_client_config: RedisConfig | None = None


def create_redis_client(config: RedisConfig) -> RedisClient:
    """A new client with its own pool; callers that want the shared one use get_redis_instance()."""
    pool = redis.ConnectionPool.from_url(
        config.url,
        max_connections=config.max_connections,
        socket_timeout=config.socket_timeout,
        socket_connect_timeout=config.socket_connect_timeout,
        health_check_interval=30,
        decode_responses=True,
        # Ride out a Redis restart (a few seconds) instead of failing a task's claim or finish:
        # up to 20 retries on connection errors, backing off to 1 s.
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 20),
    )
    return RedisClient(connection_pool=pool)


def durability_warnings(client: redis.Redis) -> list[str]:
    """What in this Redis's configuration can lose accepted tasks or run finished ones again.

    The guard and the broker share the Redis: without AOF a restart loses queued messages and the
    records saying which tasks finished; an eviction policy may drop a guard while a copy of its
    message still waits, and that copy would run again.  One round trip (CONFIG GET).
    """
    try:
        settings = client.config_get("appendonly", "maxmemory-policy")
    except redis.ResponseError as error:  # managed services often refuse CONFIG
        return [f"could not read Redis's persistence settings ({error}); make sure AOF is on and "
                "maxmemory-policy is noeviction"]
    warnings = []
    if settings.get("appendonly") != "yes":
        warnings.append("Redis persistence (appendonly) is off: a Redis restart loses every queued "
                        "task and record; turn AOF on (appendonly yes) in production")
    policy = settings.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        warnings.append(f"Redis maxmemory-policy is {policy}: under memory pressure Redis may evict a "
                        "task's guard and a finished task could run again; set noeviction")
    return warnings


def get_redis_instance() -> RedisClient:
    """The process's pooled client; rebuilt when the configuration changes (tests).

    redis-py's pool notices a fork and opens fresh connections in the child, so prefork
    workers can share this module-level client safely.
    """
    global _client, _client_config
    config = get_config().redis
    with _lock:
        if _client is None or _client_config != config:
            if _client is not None:
                _client.connection_pool.disconnect()
            _client, _client_config = create_redis_client(config), config
        return _client
