"""get_redis_instance(): one pooled client per process, built from the configuration."""

from easyrag.common.redis_utils import get_redis_instance
from tests.support.redis_server import free_port


def test_one_client_per_process_on_the_configured_database(redis_test_url):
    client = get_redis_instance()
    assert client is get_redis_instance()
    assert client.connection_pool.connection_kwargs["db"] == int(redis_test_url.rsplit("/", 1)[1])
    assert client.health_check() is True


def test_pool_options_come_from_redis_config(env, settings, redis_test_url):
    settings.REDIS_CONFIG = {"max_connections": 3, "socket_timeout": 1.5, "socket_connect_timeout": 0.5}
    env(REDIS_URL=redis_test_url)
    client = get_redis_instance()
    pool = client.connection_pool
    assert pool.max_connections == 3
    assert pool.connection_kwargs["socket_timeout"] == 1.5
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.5


def test_client_follows_a_configuration_change(env):
    before = get_redis_instance()
    env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    after = get_redis_instance()
    assert after is not before
    assert after.health_check() is False  # nothing answers there: False, not an exception
