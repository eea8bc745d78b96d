"""Brokers move messages between processes and keep history and presence.

Pick one by URL in ``TIDINGS["BROKER"]``: ``memory://`` (one process, the default), or
``redis://host:6379/0`` / ``rediss://`` (TLS) / ``unix:///path/redis.sock?db=0`` for many
processes (docs/redis.md), or ``redis+cluster://host:7000,host:7001/`` for a Redis
Cluster, or ``redis+sentinel://host:26379,host:26380/<service>/<db>`` for the master Redis
Sentinel names (docs/redis.md), or ``postgresql://user@host:5432/db`` / ``postgres://`` /
``django://<DATABASES alias>`` for many processes with PostgreSQL only (docs/brokers.md).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from tidings.brokers.base import Broker, HistoryResult, PresenceStore

BACKENDS = {
    "memory": "tidings.brokers.memory.MemoryBroker",
    "redis": "tidings.brokers.redis.RedisBroker",
    "rediss": "tidings.brokers.redis.RedisBroker",
    "unix": "tidings.brokers.redis.RedisBroker",
    "redis+sentinel": "tidings.brokers.redis.RedisBroker",
    "redis+cluster": "tidings.brokers.redis.cluster.RedisClusterBroker",
    "postgresql": "tidings.brokers.postgres.PostgresBroker",
    "postgres": "tidings.brokers.postgres.PostgresBroker",
    "django": "tidings.brokers.postgres.PostgresBroker",
}


def broker_from_url(url: str) -> Broker:
    """Build the broker that ``url``'s scheme names."""
    scheme = urlsplit(url).scheme
    try:
        path = BACKENDS[scheme]
    except KeyError:
        known = ", ".join(f"{s}://" for s in BACKENDS)
        raise ImproperlyConfigured(f"TIDINGS['BROKER'] = {url!r}: use one of {known}") from None
    cls: type[Broker] = import_string(path)
    return cls(url)


__all__ = ["Broker", "HistoryResult", "PresenceStore", "broker_from_url"]
