"""Django settings for the Channels targets: no database, no middleware, one layer.

``BENCH_CHANNEL_LAYER`` picks the layer: ``redis-pubsub`` (channels_redis'
``RedisPubSubChannelLayer`` on 127.0.0.1:6379, the fastest Channels setup measured in
shared/PEERS-PERF.md) or ``memory`` (``InMemoryChannelLayer``). The in-memory layer's
per-channel capacity is raised from 100 to 100,000, as tidings' ``QUEUE_SIZE`` is, so a
burst is not dropped for a reason the other targets do not have.
"""

import os

SECRET_KEY = "bench-only-not-secret-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
DATABASES: dict[str, dict[str, str]] = {}
ROOT_URLCONF = "bench.servers.channels_asgi"
ASGI_APPLICATION = "bench.servers.channels_asgi.application"
USE_TZ = True

_LAYERS = {
    "redis-pubsub": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")]},
    },
    "memory": {
        "BACKEND": "channels.layers.InMemoryChannelLayer",
        "CONFIG": {"capacity": 100_000},
    },
}
CHANNEL_LAYERS = {"default": _LAYERS[os.environ.get("BENCH_CHANNEL_LAYER", "memory")]}
LOGGING = {"version": 1, "disable_existing_loggers": False}
