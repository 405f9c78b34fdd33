"""The settings table: precedence, validation, and one-line errors at every entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from easyrag.config import TASK_OPTIONS, get_config

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_documented_table(env, settings):
    env(**{option.env: None for option in TASK_OPTIONS})
    settings.ASYNC_TASK_CONFIG = {}
    config = get_config()
    assert (config.max_workers, config.queue_size, config.redis_prefix) == (4, 100, "async_task")
    assert (config.default_timeout, config.default_retries, config.lock_timeout) == (300, 3, 30)
    assert (config.visibility_timeout, config.max_crashes, config.result_ttl) == (60, 3, 604800)
    assert (config.chunk_size, config.chunk_overlap) == (1000, 100)
    assert config.max_data_bytes == 1024 * 1024
    assert config.max_upload_bytes == 100 * 1024 * 1024
    assert config.backup_dir == ROOT / "backups"  # never under MEDIA_ROOT: dumps hold credentials
    assert config.file_roots[0] == config.media_root


def test_environment_wins_over_django_settings_which_win_over_defaults(env, settings):
    settings.ASYNC_TASK_CONFIG = {"max_workers": 7, "queue_size": 9}
    env(ASYNC_TASK_WORKERS="2", ASYNC_TASK_QUEUE_SIZE=None)
    config = get_config()
    assert config.max_workers == 2  # environment
    assert config.queue_size == 9  # Django setting
    assert config.redis_prefix == "async_task"  # default


def test_redis_url_wins_over_host_and_port(env):
    env(REDIS_URL="redis://:s%40cret@redis.example:6390/4", REDIS_HOST="elsewhere", REDIS_PORT="1")
    redis = get_config().redis
    assert redis.url == "redis://:s%40cret@redis.example:6390/4"
    assert (redis.host, redis.port, redis.password, redis.db) == ("redis.example", 6390, "s@cret", 4)


def test_redis_parts_build_the_url_with_a_quoted_password(env):
    env(REDIS_URL=None, REDIS_HOST="cache.local", REDIS_PORT="6380", REDIS_PASSWORD="p@ss/word",
        REDIS_DB="3")
    assert get_config().redis.url == "redis://:p%40ss%2Fword@cache.local:6380/3"


def test_redis_pool_options_come_from_django_redis_config(env, settings):
    env(REDIS_URL="redis://127.0.0.1:6379/0")
    settings.REDIS_CONFIG = {"max_connections": 7, "socket_timeout": 2}
    redis = get_config().redis
    assert (redis.max_connections, redis.socket_timeout, redis.socket_connect_timeout) == (7, 2.0, 5.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ASYNC_TASK_WORKERS", "abc", "ASYNC_TASK_WORKERS must be a positive integer, got 'abc'"),
        ("ASYNC_TASK_WORKERS", "0", "ASYNC_TASK_WORKERS must be a positive integer, got '0'"),
        ("ASYNC_TASK_QUEUE_SIZE", "-1", "ASYNC_TASK_QUEUE_SIZE must be an integer >= 0, got '-1'"),
        ("ASYNC_TASK_LOCK_TIMEOUT", "soon", "ASYNC_TASK_LOCK_TIMEOUT must be a positive number"),
        ("REDIS_URL", "not a url", "REDIS_URL must be a URL like redis://"),
        ("REDIS_URL", "redis://localhost:port/0", "REDIS_URL must be a redis:// URL"),
        ("REDIS_URL", "redis://localhost:6379/zero", "REDIS_URL must end in a database number"),
        ("REDIS_PORT", "63a79", "REDIS_PORT must be a positive integer"),
        ("ASYNC_TASK_LOG_LEVEL", "LOUD", None),
    ],
)
def test_bad_environment_value_names_the_variable(env, name, value, message):
    env(**{name: value})
    if name == "ASYNC_TASK_LOG_LEVEL":  # a Django-own setting, read by settings.py
        from easyrag.config import django_value

        with pytest.raises(ImproperlyConfigured, match="ASYNC_TASK_LOG_LEVEL must be one of"):
            django_value(name)
        return
    with pytest.raises(ImproperlyConfigured) as error:
        get_config()
    assert str(error.value).startswith(message)


def test_bad_django_setting_names_the_setting_key(env, settings):
    env(ASYNC_TASK_WORKERS=None)
    settings.ASYNC_TASK_CONFIG = {"max_workers": "many"}
    with pytest.raises(ImproperlyConfigured, match=r"ASYNC_TASK_CONFIG\['max_workers'\] must be a positive"):
        get_config()


def test_lock_timeout_longer_than_the_visibility_timeout_is_refused(env):
    env(ASYNC_TASK_VISIBILITY_TIMEOUT="60", ASYNC_TASK_LOCK_TIMEOUT="90")
    with pytest.raises(ImproperlyConfigured, match="ASYNC_TASK_LOCK_TIMEOUT must not exceed "
                                                   "ASYNC_TASK_VISIBILITY_TIMEOUT"):
        get_config()


@pytest.mark.parametrize("value", ["-1", "soon", "inf"])
def test_shutdown_grace_must_be_a_number_of_seconds(env, value):
    env(ASYNC_TASK_SHUTDOWN_GRACE=value)
    with pytest.raises(ImproperlyConfigured, match="ASYNC_TASK_SHUTDOWN_GRACE must be a number >= 0"):
        get_config()


def test_result_ttl_shorter_than_two_visibility_timeouts_is_refused(env):
    env(ASYNC_TASK_VISIBILITY_TIMEOUT="60", ASYNC_TASK_RESULT_TTL="100")
    with pytest.raises(ImproperlyConfigured, match="ASYNC_TASK_RESULT_TTL must be at least 2 x"):
        get_config()


def test_config_is_cached_until_the_cache_is_cleared(env):
    env(ASYNC_TASK_WORKERS="5")
    first = get_config()
    os.environ["ASYNC_TASK_WORKERS"] = "6"  # not seen: read once per process
    assert get_config() is first
    env(ASYNC_TASK_WORKERS="6")
    assert get_config().max_workers == 6


ENTRY_POINTS = {
    "manage.py check": [sys.executable, "manage.py", "check"],
    "celery worker": [sys.executable, "-m", "celery", "-A", "easyrag", "worker", "-c", "1"],
    "demo": [sys.executable, "-m", "easyrag.demo"],
}


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(
    ("name", "value"),
    [("ASYNC_TASK_WORKERS", "abc"), ("REDIS_URL", "http//nonsense"), ("DATABASE_URL", "nosuchdb://x")],
)
def test_entry_point_with_bad_setting_prints_one_line_and_exits_1(entry_point, name, value):
    result = subprocess.run(
        ENTRY_POINTS[entry_point], cwd=ROOT, env={**os.environ, name: value},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"easyrag: configuration error: {name} ")
    assert "Traceback" not in result.stdout + result.stderr


def test_handler_modules_are_the_builtin_list_then_the_users(env):
    import celeryconfig
    from easyrag.config import BUILTIN_HANDLER_MODULES

    env(ASYNC_TASK_HANDLER_MODULES="myapp.handlers, other.handlers")
    assert get_config().all_handler_modules == (*BUILTIN_HANDLER_MODULES, "myapp.handlers", "other.handlers")
    # ...and the runner of Django's Tasks, so every worker knows it
    assert celeryconfig.imports == (*BUILTIN_HANDLER_MODULES, *celeryconfig._config.handler_modules,
                                    "easyrag.task_app.django_tasks")


def test_tasks_holds_exactly_the_builtin_handler_modules():
    from easyrag.config import BUILTIN_HANDLER_MODULES

    modules = {f"tasks.{path.stem}" for path in (ROOT / "tasks").glob("*.py") if path.stem != "__init__"}
    assert modules == set(BUILTIN_HANDLER_MODULES)  # tasks/ holds handlers only, and each is loaded


SERVE = [sys.executable, "-c", "from easyrag.wsgi import application"]


def _without_test_markers(**values: str) -> dict[str, str]:
    environ = {name: value for name, value in os.environ.items()
               if name not in ("PYTEST_VERSION", "PYTEST_CURRENT_TEST", "DJANGO_SECRET_KEY", "DJANGO_DEBUG")}
    return {**environ, **values}


def test_a_server_refuses_the_built_in_secret_key_when_debug_is_off():
    result = subprocess.run(SERVE, cwd=ROOT, env=_without_test_markers(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY must be set")


@pytest.mark.parametrize("values", [{"DJANGO_SECRET_KEY": "a-real-secret-from-the-operator"},
                                    {"DJANGO_DEBUG": "1"}])
def test_a_server_starts_with_a_secret_key_of_its_own_or_in_debug(values):
    result = subprocess.run(SERVE, cwd=ROOT, env=_without_test_markers(**values), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_built_in_secret_key_set_explicitly_is_refused_too():
    result = subprocess.run(SERVE, cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env=_without_test_markers(DJANGO_SECRET_KEY="easyrag-insecure-development-key"))
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr.strip().splitlines()[-1]


def test_commands_that_serve_nothing_keep_working_without_a_secret_key():
    """dev.py's set-up (migrate), workers and the demo sign nothing: a fresh machine needs no key."""
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=_without_test_markers(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_api_limits_default_to_50_live_tasks_and_64_kib_of_data(env, settings):
    env(ASYNC_TASK_API_USER_LIMIT=None, ASYNC_TASK_API_MAX_DATA_BYTES=None)
    settings.ASYNC_TASK_CONFIG = {}
    assert (get_config().api_user_limit, get_config().api_max_data_bytes) == (50, 64 * 1024)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("ASYNC_TASK_API_USER_LIMIT", "-1", "ASYNC_TASK_API_USER_LIMIT must be an integer >= 0, got '-1'"),
    ("ASYNC_TASK_API_USER_LIMIT", "many", "ASYNC_TASK_API_USER_LIMIT must be an integer >= 0"),
    ("ASYNC_TASK_API_MAX_DATA_BYTES", "0", "ASYNC_TASK_API_MAX_DATA_BYTES must be a positive integer"),
])
def test_bad_api_limits_name_the_variable(env, name, value, message):
    env(**{name: value})
    with pytest.raises(ImproperlyConfigured) as error:
        get_config()
    assert str(error.value).startswith(message)


def test_a_clear_wins_over_a_read_already_under_way(env, monkeypatch):
    """A background thread (a heartbeat, the promoter) that read the environment before a change
    must not store that configuration after the change's clear (a CI run once saw a test's API
    settings undone that way: functools.cache stores whatever a read returns)."""
    import threading

    from easyrag import config

    env(ASYNC_TASK_QUEUE_SIZE="11")
    reading, release = threading.Event(), threading.Event()
    real_read = config._read_config

    def slow_read():
        found = real_read()  # the environment as it is now: 11
        reading.set()
        release.wait(10)
        return found

    monkeypatch.setattr(config, "_read_config", slow_read)
    seen = []
    reader = threading.Thread(target=lambda: seen.append(get_config().queue_size))
    reader.start()
    assert reading.wait(10)
    monkeypatch.setattr(config, "_read_config", real_read)
    env(ASYNC_TASK_QUEUE_SIZE="22")  # changes the environment, then clears
    release.set()
    reader.join(10)
    assert seen == [11]  # the reader got what it read...
    assert get_config().queue_size == 22  # ...but did not keep it
