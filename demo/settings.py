"""Settings of the tidings demo site. Embedded defaults: SQLite, in-memory broker.

Environment: DEMO_DB (SQLite path), DEMO_DEBUG (0/1), TIDINGS_BROKER, DEMO_SECRET_KEY,
DEMO_NEW_PER_MINUTE and DEMO_MAX_NEW (what a visitor may create: demo/limits.py).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DEMO_SECRET_KEY", "demo-only-not-secret-" + "x" * 40)
DEBUG = os.environ.get("DEMO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "tidings",  # before staticfiles: its runserver serves the realtime endpoints too
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "demo.rooms",
    "demo.headlines",
    "demo.dashboard",
    "demo.counters",
    "demo.chat",
    "demo.site",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }
}

if os.environ.get("DEMO_PG"):  # a PostgreSQL database name (127.0.0.1:5432, trust auth)
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["DEMO_PG"],
        "HOST": os.environ.get("DEMO_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DEMO_PG_PORT", "5432"),
        "USER": os.environ.get("DEMO_PG_USER", "postgres"),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:index"
LOGOUT_REDIRECT_URL = "index"
STATICFILES_DIRS = [BASE_DIR / "static"]

# Rooms and headlines need no login: a visitor may create DEMO_NEW_PER_MINUTE of each a
# minute, and the demo holds at most DEMO_MAX_NEW of each (demo/limits.py).
DEMO_NEW_PER_MINUTE = int(os.environ.get("DEMO_NEW_PER_MINUTE", "20"))
DEMO_MAX_NEW = int(os.environ.get("DEMO_MAX_NEW", "1000"))

TIDINGS = {
    "BROKER": os.environ.get("TIDINGS_BROKER", "memory://"),
    "HISTORY": {"rooms.*": {"size": 200, "ttl": 3600}},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"tidings": {"handlers": ["console"], "level": "INFO"}},
}
