"""Django settings for the tidings target: a small project with tidings installed.

Served as the README says (``uvicorn --factory tidings.asgi:get_asgi_application``).
Three settings differ from the defaults, so that the bench measures fan-out rather than
the guards: ``RATE_LIMIT`` is raised (the publisher sends bursts of thousands of frames
on one socket), ``CONNECT_RATE`` too (the accept phase opens thousands of sockets at
once) and ``QUEUE_SIZE`` (a whole burst may be queued for a subscriber
before its socket drains). History keeps its defaults: appending to it is part of
every publish. ``BENCH_TIDINGS_BROKER`` picks the broker (``memory://`` by default);
``BENCH_TIDINGS_METRICS=0`` turns the Prometheus metrics off.
The middleware is ``startproject``'s (without messages): the SSE target's streams are
Django requests and go through it, as they would in a real project.
"""

import os

SECRET_KEY = "bench-only-not-secret-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "tidings",
    "bench.servers",  # its realtime.py: the server-side publish patterns (bench.ctl)
]
# startproject's middleware (minus messages): tidings' HTTP endpoints (SSE, long-poll)
# need request.auser(); WebSockets on TIDINGS["PATH"] + "ws" do not pass through it.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
ROOT_URLCONF = "bench.servers.tidings_settings"
urlpatterns: list[object] = []
USE_TZ = True

TIDINGS = {
    "BROKER": os.environ.get("BENCH_TIDINGS_BROKER", "memory://"),
    "RATE_LIMIT": {"rate": 1e9, "burst": 10**9},
    # the accept phase opens N sockets as fast as it can: CONNECT_RATE's default (500/s,
    # burst 1,000) would refuse most of them at N=5,000; raised, its bucket is still taken
    "CONNECT_RATE": {"rate": 1e9, "burst": 10**9},
    "QUEUE_SIZE": 100_000,
    "RULES": {"bench.*": {"subscribe": True, "publish": True}},
    # BENCH_TIDINGS_METRICS=0: no Prometheus metrics, to measure what counting costs
    "METRICS": os.environ.get("BENCH_TIDINGS_METRICS", "1") == "1",
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"tidings": {"handlers": ["console"], "level": "WARNING"}},
}
