"""The settings table: every setting of the project, declared once, read once, validated, cached.

Each setting is read from the environment first, then from Django settings (``REDIS_CONFIG`` or
``ASYNC_TASK_CONFIG``), then falls back to its default, the way ``celery/app/defaults.py`` declares
Celery's. ``settings.py``, ``celeryconfig.py``, ``redis_utils``, the lock, the facade and the
handlers all take their values from here; nothing else reads ``os.environ``.

This module never touches ``django.conf.settings`` at import: ``settings.py`` calls
:func:`django_value` for Django's own settings, and :func:`get_config` reads Django settings
lazily on first use.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDIS_SCHEMES = ("redis", "rediss", "unix")

#: The built-in handlers' modules (``tasks/``), one per handler.  Workers (celeryconfig's
#: ``imports``) and the submitting process (``load_handler_modules``) import these, then the users'
#: modules of ASYNC_TASK_HANDLER_MODULES; see :attr:`Config.all_handler_modules`.  Loading them by
#: name keeps ``easyrag/`` from importing ``tasks``, the layer above it.  Not a setting: a built-in
#: handler is part of the product, and users add theirs through ASYNC_TASK_HANDLER_MODULES.
BUILTIN_HANDLER_MODULES: tuple[str, ...] = (
    "tasks.document_parse",
    "tasks.email_send",
    "tasks.data_process",
    "tasks.file_upload",
    "tasks.report_generation",
    "tasks.notification",
    "tasks.backup",
)


# --- parsers: each takes a string (from the environment) or a value (from Django settings) ---

def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _integer(value: Any, minimum: int, words: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"must be {words}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"must be {words}") from None
    if not isinstance(value, int) or value < minimum:
        raise ValueError(f"must be {words}")
    return value


def positive_int(value: Any) -> int:
    return _integer(value, 1, "a positive integer")


def non_negative_int(value: Any) -> int:
    return _integer(value, 0, "an integer >= 0")


def positive_float(value: Any) -> float:
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError("must be a positive number") from None
    if isinstance(value, bool) or not number > 0:
        raise ValueError("must be a positive number")
    return number


def non_negative_float(value: Any) -> float:
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError("must be a number >= 0") from None
    if isinstance(value, bool) or not number >= 0 or number == float("inf"):
        raise ValueError("must be a number >= 0")
    return number


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def comma_list(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a comma-separated list")
    return tuple(str(item).strip() for item in items if str(item).strip())


def path_list(value: Any) -> tuple[Path, ...]:
    return tuple(Path(item).expanduser().resolve() for item in comma_list(value))


def directory(value: Any) -> Path:
    text = str(value).strip()
    if not text:
        raise ValueError("must be a directory path")
    return Path(text).expanduser().resolve()


def log_level(value: Any) -> str:
    level = str(value).strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def redis_url(value: Any) -> str:
    """Check a Redis URL the way redis-py will read it: scheme, port and database number."""
    text = _text(value).strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("must be a redis:// URL") from None
    if parts.scheme not in REDIS_SCHEMES or (parts.scheme != "unix" and not parts.hostname):
        raise ValueError("must be a URL like redis://[:password@]host:port/db")
    db = parts.path.lstrip("/") if parts.scheme != "unix" else "0"
    if db and not db.isdigit():
        raise ValueError("must end in a database number, like redis://localhost:6379/0")
    return text


def database_url(value: Any) -> dict[str, Any]:
    import dj_database_url

    try:
        return dict(dj_database_url.parse(_text(value).strip()))
    except (ValueError, dj_database_url.UnknownSchemeError) as error:
        reason = str(error).split(". ")[0]  # dj-database-url appends the whole list of schemes
        raise ValueError(f"is not a database URL ({reason})") from None


# --- the table ---

@dataclass(frozen=True)
class Option:
    """One setting: where it comes from, how it is parsed, its default and what it means."""

    env: str
    key: str
    parse: Callable[[Any], Any]
    default: Any
    meaning: str


#: settings.py's SECRET_KEY when DJANGO_SECRET_KEY is unset.  It is public (it is in git), so a
#: process that serves requests with DEBUG off refuses it (:func:`refuse_development_secret_key`).
DEVELOPMENT_SECRET_KEY = "easyrag-insecure-development-key"

#: ``ASYNC_TASK_CONFIG`` keys.  A default of None is derived in :func:`get_config`.
TASK_OPTIONS: tuple[Option, ...] = (
    Option("ASYNC_TASK_WORKERS", "max_workers", positive_int, 4, "worker concurrency"),
    Option("ASYNC_TASK_QUEUE_SIZE", "queue_size", non_negative_int, 100,
           "tasks allowed to wait in the broker; 0 = unbounded"),
    Option("ASYNC_TASK_REDIS_PREFIX", "redis_prefix", _text, "async_task", "key prefix of records"),
    Option("ASYNC_TASK_DEFAULT_TIMEOUT", "default_timeout", positive_float, 300.0,
           "seconds per task"),
    Option("ASYNC_TASK_DEFAULT_RETRIES", "default_retries", non_negative_int, 3, "retries per task"),
    Option("ASYNC_TASK_LOCK_TIMEOUT", "lock_timeout", positive_float, 30.0,
           "seconds: TTL of a running task's lock, renewed while it runs"),
    Option("ASYNC_TASK_VISIBILITY_TIMEOUT", "visibility_timeout", positive_int, 60,
           "seconds: broker visibility timeout, for crash recovery"),
    Option("ASYNC_TASK_MAX_CRASHES", "max_crashes", positive_int, 3,
           "crashed executions after which a task ends FAILED"),
    Option("ASYNC_TASK_SHUTDOWN_GRACE", "shutdown_grace", non_negative_float, 5.0,
           "seconds a warm shutdown lets running tasks finish before it gives them back to the queue"),
    Option("ASYNC_TASK_HANDLER_MODULES", "handler_modules", comma_list, (),
           "dotted modules with users' handlers, imported by workers and the facade"),
    Option("ASYNC_TASK_RESULT_TTL", "result_ttl", positive_int, 604800,
           "seconds a finished record is kept; at least 2 x the visibility timeout"),
    Option("ASYNC_TASK_MAX_DATA_BYTES", "max_data_bytes", positive_int, MIB,
           "cap on a task's JSON data, in bytes"),
    Option("ASYNC_TASK_FILE_ROOTS", "file_roots", path_list, None,
           "directories handlers may read and write (default: MEDIA_ROOT and data/)"),
    Option("ASYNC_TASK_WEBHOOK_ALLOWED_HOSTS", "webhook_allowed_hosts", comma_list, (),
           "entries notifications may POST to: host (ports 80 and 443), host:port, or host:*"),
    Option("ASYNC_TASK_API_TASK_TYPES", "api_task_types", comma_list, ("DocumentParseTaskHandler",),
           "task types non-staff users may submit through the REST API (staff: every type)"),
    Option("ASYNC_TASK_API_USER_LIMIT", "api_user_limit", non_negative_int, 50,
           "tasks one non-staff user may have pending or running at once through the REST API; "
           "0 = no limit"),
    Option("ASYNC_TASK_API_MAX_DATA_BYTES", "api_max_data_bytes", positive_int, 64 * 1024,
           "cap on the JSON task_data of a REST API submission, in bytes (Python: "
           "ASYNC_TASK_MAX_DATA_BYTES)"),
    Option("ASYNC_TASK_METRICS_TOKEN", "metrics_token", _text, "",
           "bearer token that may read /metrics besides staff users (Authorization: Bearer ...); "
           "empty = staff only"),
    Option("ASYNC_TASK_CHUNK_SIZE", "chunk_size", positive_int, 1000,
           "document chunk size, in characters"),
    Option("ASYNC_TASK_CHUNK_OVERLAP", "chunk_overlap", non_negative_int, 100,
           "overlap between chunks, in characters"),
    Option("ASYNC_TASK_MAX_UPLOAD_BYTES", "max_upload_bytes", positive_int, 100 * MIB,
           "size limit of FileUploadTaskHandler, in bytes"),
    Option("ASYNC_TASK_BACKUP_DIR", "backup_dir", directory, BASE_DIR / "backups",
           "where backups are written (default: backups/ in the project folder, ignored by git; "
           "never under MEDIA_ROOT or a file root, since dumps hold credentials)"),
)

#: ``REDIS_CONFIG`` keys.  ``REDIS_URL`` (or ``REDIS_CONFIG['url']``) wins over the parts.
REDIS_OPTIONS: tuple[Option, ...] = (
    Option("REDIS_URL", "url", redis_url, None, "the whole Redis URL; wins over the parts"),
    Option("REDIS_HOST", "host", _text, "127.0.0.1", "Redis host"),
    Option("REDIS_PORT", "port", positive_int, 6379, "Redis port"),
    Option("REDIS_PASSWORD", "password", _text, "", "Redis password"),
    Option("REDIS_DB", "db", non_negative_int, 0, "Redis database number"),
    Option("", "max_connections", positive_int, 20, "connections in the pool, per process"),
    Option("", "socket_timeout", positive_float, 5.0, "seconds to wait for a Redis reply"),
    Option("", "socket_connect_timeout", positive_float, 5.0, "seconds to wait for a connection"),
)

#: Django's own settings, read from the environment by ``settings.py``.
DJANGO_OPTIONS: tuple[Option, ...] = (
    Option("DATABASE_URL", "DATABASES", database_url, f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
           "the database (default: a SQLite file inside the project)"),
    Option("MEDIA_ROOT", "MEDIA_ROOT", directory, BASE_DIR / "media", "Django storage root"),
    Option("ASYNC_TASK_LOG_LEVEL", "LOGGING", log_level, "INFO", "level of the project's loggers"),
    Option("DJANGO_SECRET_KEY", "SECRET_KEY", _text, DEVELOPMENT_SECRET_KEY,
           "Django secret key; a site serving requests with DEBUG off refuses the default"),
    Option("DJANGO_DEBUG", "DEBUG", boolean, False, "Django debug mode"),
    Option("DJANGO_ALLOWED_HOSTS", "ALLOWED_HOSTS", comma_list, ("localhost", "127.0.0.1"),
           "host names this site serves"),
    Option("EMAIL_BACKEND", "EMAIL_BACKEND", _text,
           "django.core.mail.backends.console.EmailBackend", "Django email backend"),
    Option("EMAIL_FILE_PATH", "EMAIL_FILE_PATH", directory, BASE_DIR / "data" / "email",
           "folder of the file email backend"),
    Option("EMAIL_HOST", "EMAIL_HOST", _text, "localhost", "SMTP host"),
    Option("EMAIL_PORT", "EMAIL_PORT", positive_int, 25, "SMTP port"),
    Option("EMAIL_HOST_USER", "EMAIL_HOST_USER", _text, "", "SMTP user"),
    Option("EMAIL_HOST_PASSWORD", "EMAIL_HOST_PASSWORD", _text, "", "SMTP password"),
    Option("EMAIL_USE_TLS", "EMAIL_USE_TLS", boolean, False, "SMTP STARTTLS"),
    Option("DEFAULT_FROM_EMAIL", "DEFAULT_FROM_EMAIL", _text, "easyrag@localhost",
           "sender of outgoing mail"),
)


def _parse(option: Option, value: Any, source: str) -> Any:
    try:
        return option.parse(value)
    except ValueError as error:
        raise ImproperlyConfigured(f"{source} {error}, got {value!r}") from None


def _read(option: Option, django_values: dict[str, Any], django_name: str) -> Any:
    """Environment first, then the Django settings dict, then the default."""
    if option.env and option.env in os.environ:
        return _parse(option, os.environ[option.env], option.env)
    if option.key in django_values:
        return _parse(option, django_values[option.key], f"{django_name}['{option.key}']")
    return option.default


def django_value(env: str) -> Any:
    """Parse one of Django's own settings (``DJANGO_OPTIONS``) from the environment or its default."""
    option = next(option for option in DJANGO_OPTIONS if option.env == env)
    if env in os.environ:
        return _parse(option, os.environ[env], env)
    return option.parse(option.default) if isinstance(option.default, str | Path) else option.default


def check_secret_key(secret_key: str, debug: bool) -> None:
    """Refuse the public development key when DEBUG is off (a pytest run may use it: PYTEST_VERSION).

    Raises ``ImproperlyConfigured`` with one line naming DJANGO_SECRET_KEY.
    """
    if secret_key == DEVELOPMENT_SECRET_KEY and not debug and "PYTEST_VERSION" not in os.environ:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off: the built-in development key is "
            "public, and anyone could forge this site's sessions and signed values with it")


def refuse_development_secret_key(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Django middleware, first in MIDDLEWARE: a server (WSGI, ASGI, runserver) checks the key at start.

    Django builds the middleware chain once, when a server loads its handler, so the check runs
    before the first request; then the middleware takes itself out (``MiddlewareNotUsed``).
    Workers, the demo and ``migrate`` never build the chain: they sign nothing with the key.
    """
    from django.conf import settings
    from django.core.exceptions import MiddlewareNotUsed

    check_secret_key(settings.SECRET_KEY, settings.DEBUG)
    raise MiddlewareNotUsed


# --- the typed result ---

@dataclass(frozen=True)
class RedisConfig:
    """Where Redis is and how the per-process pool talks to it."""

    host: str
    port: int
    password: str
    db: int
    max_connections: int
    socket_timeout: float
    socket_connect_timeout: float
    url_override: str | None = None

    @property
    def url(self) -> str:
        """The URL that Celery, kombu and redis-py all connect with."""
        if self.url_override:
            return self.url_override
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"


@dataclass(frozen=True)
class Config:
    """Every ``ASYNC_TASK_CONFIG`` value, typed and validated, plus the Redis settings."""

    redis: RedisConfig
    max_workers: int
    queue_size: int
    redis_prefix: str
    default_timeout: float
    default_retries: int
    lock_timeout: float
    visibility_timeout: int
    max_crashes: int
    shutdown_grace: float
    handler_modules: tuple[str, ...]
    result_ttl: int
    max_data_bytes: int
    file_roots: tuple[Path, ...]
    webhook_allowed_hosts: tuple[str, ...]
    api_task_types: tuple[str, ...]
    api_user_limit: int
    api_max_data_bytes: int
    metrics_token: str
    chunk_size: int
    chunk_overlap: int
    max_upload_bytes: int
    backup_dir: Path
    media_root: Path

    @property
    def all_handler_modules(self) -> tuple[str, ...]:
        """Every handler module to import at start-up: the built-in ones, then the users'."""
        return (*BUILTIN_HANDLER_MODULES, *self.handler_modules)


def _django_dict(name: str) -> dict[str, Any]:
    """A dict setting of Django's, or {} when this process has no Django settings at all."""
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return {}
    values = getattr(settings, name, None) or {}
    if not isinstance(values, dict):
        raise ImproperlyConfigured(f"{name} must be a dict, got {values!r}")
    return values


def _django_media_root() -> Path:
    from django.conf import settings

    if settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE"):
        media_root = getattr(settings, "MEDIA_ROOT", "")
        if media_root:
            return directory(media_root)
    return django_value("MEDIA_ROOT")


def _redis_config() -> RedisConfig:
    django_values = _django_dict("REDIS_CONFIG")
    values = {option.key: _read(option, django_values, "REDIS_CONFIG") for option in REDIS_OPTIONS}
    url = values.pop("url")
    if url:
        # The URL is the whole truth; its parts are kept for display and for redis-py's pool.
        parts = urlsplit(url)
        values.update(
            host=parts.hostname or values["host"],
            port=parts.port or values["port"],
            password=unquote(parts.password or ""),
            db=int(parts.path.lstrip("/") or 0) if parts.scheme != "unix" else 0,
        )
    return RedisConfig(url_override=url, **values)


#: get_config's cache: the configuration (None until read) and the number of clears so far.
_cached: list[Any] = [None, 0]
_cache_lock = threading.Lock()


def get_config() -> Config:
    """The validated configuration of this process, read once and cached.

    Raises ``ImproperlyConfigured`` naming the variable when a value is bad.
    Tests that change the environment call ``get_config.cache_clear()``.  Unlike functools.cache,
    a clear wins over a read already under way: a thread (a heartbeat, the promoter) that began
    reading the environment before the change does not store what it read after the clear.
    """
    config, clears = _cached
    if config is not None:
        return config
    config = _read_config()
    with _cache_lock:
        if _cached[1] == clears:
            _cached[0] = config
    return config


def _clear_config() -> None:
    with _cache_lock:
        _cached[:] = [None, _cached[1] + 1]


get_config.cache_clear = _clear_config  # type: ignore[attr-defined]


def _read_config() -> Config:
    django_values = _django_dict("ASYNC_TASK_CONFIG")
    values = {option.key: _read(option, django_values, "ASYNC_TASK_CONFIG") for option in TASK_OPTIONS}
    media_root = _django_media_root()
    if values["file_roots"] is None:
        values["file_roots"] = (media_root, BASE_DIR / "data")
    config = Config(redis=_redis_config(), media_root=media_root, **values)
    _check_consistency(config)
    return config


def _check_consistency(config: Config) -> None:
    if config.result_ttl < 2 * config.visibility_timeout:
        raise ImproperlyConfigured(
            f"ASYNC_TASK_RESULT_TTL must be at least 2 x ASYNC_TASK_VISIBILITY_TIMEOUT "
            f"({2 * config.visibility_timeout} s), got {config.result_ttl}: a late redelivery "
            f"would find no record of a finished task and run it again"
        )
    if config.lock_timeout > config.visibility_timeout:
        raise ImproperlyConfigured(
            f"ASYNC_TASK_LOCK_TIMEOUT must not exceed ASYNC_TASK_VISIBILITY_TIMEOUT "
            f"({config.visibility_timeout} s), got {config.lock_timeout:g}: a crashed worker's task "
            f"would come back while its dead holder's lock still blocks it"
        )
    if config.chunk_overlap >= config.chunk_size:
        raise ImproperlyConfigured(
            f"ASYNC_TASK_CHUNK_OVERLAP must be smaller than ASYNC_TASK_CHUNK_SIZE "
            f"({config.chunk_size}), got {config.chunk_overlap}"
        )


def load_or_exit() -> Config:
    """For entry points: a bad setting prints one line naming it and exits with status 1."""
    try:
        return get_config()
    except ImproperlyConfigured as error:
        print(f"easyrag: configuration error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
