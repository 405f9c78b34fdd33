"""Django settings of the EasyRAG task layer, built from easyrag.config (the one settings table)."""

from pathlib import Path

import django

from easyrag import config

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = config.django_value("DJANGO_SECRET_KEY")
DEBUG = config.django_value("DJANGO_DEBUG")
ALLOWED_HOSTS = list(config.django_value("DJANGO_ALLOWED_HOSTS"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    *(["django_tasks"] if django.VERSION < (6,) else []),  # the Tasks API's backport on Django 5.2
    "easyrag.task_app",
    "easyrag.legacy",
    "easyrag.documents",
    "easyrag.dashboard",
]

MIDDLEWARE = [
    # Refuses, when the server starts, the built-in SECRET_KEY with DEBUG off; then steps aside.
    "easyrag.config.refuse_development_secret_key",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "easyrag.urls"
WSGI_APPLICATION = "easyrag.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": config.django_value("DATABASE_URL")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's Tasks API (@task, .enqueue()) runs on the guarded Celery workers (spec 9).
TASKS = {"default": {"BACKEND": "easyrag.task_app.django_tasks.GuardedTaskBackend"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The staff dashboard's pages send anonymous visitors to the admin's login page.
LOGIN_URL = "/admin/login/"
MEDIA_URL = "media/"
MEDIA_ROOT = config.django_value("MEDIA_ROOT")

EMAIL_BACKEND = config.django_value("EMAIL_BACKEND")
EMAIL_FILE_PATH = config.django_value("EMAIL_FILE_PATH")
EMAIL_HOST = config.django_value("EMAIL_HOST")
EMAIL_PORT = config.django_value("EMAIL_PORT")
EMAIL_HOST_USER = config.django_value("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = config.django_value("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = config.django_value("EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = config.django_value("DEFAULT_FROM_EMAIL")

_LOG_LEVEL = config.django_value("ASYNC_TASK_LOG_LEVEL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "loggers": {
        # The seed's two logger names, spelled as users configure them.
        "EasyRAG.task_app.async_task_framework": {"handlers": ["console"], "level": _LOG_LEVEL},
        "EasyRAG.task_app.task_handlers": {"handlers": ["console"], "level": _LOG_LEVEL},
        "easyrag": {"handlers": ["console"], "level": _LOG_LEVEL},
        "tasks": {"handlers": ["console"], "level": _LOG_LEVEL},
    },
}

# Request bodies up to 16 MiB reach DRF, so task data over ASYNC_TASK_MAX_DATA_BYTES (1 MiB by
# default) gets the API's JSON 400 naming task_data rather than Django's bare "Bad Request" page.
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024

REST_FRAMEWORK = {
    # Token first: a request without credentials gets 401 with "WWW-Authenticate: Token".
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "EasyRAG task API",
    "DESCRIPTION": "Submit, watch and cancel tasks; stats; document parsing.",
    "VERSION": "1.0.0",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# Overrides of the settings table in easyrag/config.py; the environment wins over these.
# REDIS_CONFIG keys: url, host, port, password, db, max_connections, socket_timeout,
# socket_connect_timeout.  ASYNC_TASK_CONFIG keys: see the README's configuration table.
REDIS_CONFIG: dict = {}
ASYNC_TASK_CONFIG: dict = {}
