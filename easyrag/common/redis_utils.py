"""get_redis_instance(): one pooled Redis client per process, configured by easyrag.config."""

from __future__ import annotations

import logging
import threading

import redis

from easyrag.config import RedisConfig, get_config

logger = logging.getLogger(__name__)


class RedisClient(redis.Redis):
    """redis-py's client with the ``health_check()`` the seed's debugging snippet calls."""

    def health_check(self) -> bool:
        """True when the server answers PING; a connection failure is logged, not raised."""
        try:
            return bool(self.ping())
        except redis.RedisError as error:
            logger.warning("Redis health check failed: %s", error)
            return False


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
    )
    return RedisClient(connection_pool=pool)


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
