"""Connection pools for a URL: one Redis, or the master that Redis Sentinel names.

``redis+sentinel://host:26379,host:26380/<service>/<db>`` asks the sentinels (any that
answers) for the current master of ``<service>``: redis-py's
:class:`~redis.sentinel.SentinelConnectionPool` does, on every new connection. After a
failover (``SENTINEL failover``, or a master that died) the old master's connections are
closed by the sentinels, or answer ``READONLY``, which redis-py turns into a broken
connection: the broker's retries, the pipeline and the listener then connect again, to
the new master, as after any broken connection. A password in the URL is the master's;
``sentinel_password`` in the query is the sentinels' own.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as asentinel
import redis.sentinel

SENTINEL = "redis+sentinel"


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme == SENTINEL


def sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, int, dict[str, Any]]:
    """The sentinels, the service name, the database, and the pools' own options."""
    parts = urlsplit(url)
    hosts = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or "127.0.0.1", int(port or 26379)))
    service, _, db = parts.path.strip("/").partition("/")
    if not service:
        raise ValueError(f"{url!r}: name the service: redis+sentinel://host:port/<service>/<db>")
    kwargs: dict[str, Any] = dict(parse_qsl(parts.query))
    kwargs.pop("db", None)
    if parts.password:
        kwargs["password"] = unquote(parts.password)
    if parts.username:
        kwargs["username"] = unquote(parts.username)
    return hosts, service, int(db or 0), kwargs


def url_db(url: str) -> int:
    """The database a URL names (``?db=``, the path, or the sentinel URL's second part)."""
    parts = urlsplit(url)
    if parts.scheme == SENTINEL:
        return sentinel_parts(url)[2]
    path_db = "" if parts.scheme == "unix" else parts.path.strip("/")  # unix: the socket
    return int(dict(parse_qsl(parts.query)).get("db") or path_db or 0)


def _sentinel_kwargs(given: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    own: dict[str, Any] = {
        k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout") if k in kwargs
    }
    if "sentinel_password" in given:
        own["password"] = given.pop("sentinel_password")
    return own


def sync_pool(url: str, **kwargs: Any) -> redis.ConnectionPool:
    """A blocking pool for one Redis; a sentinel-managed pool for ``redis+sentinel://``."""
    if not is_sentinel(url):
        return redis.BlockingConnectionPool.from_url(url, **kwargs)
    hosts, service, db, given = sentinel_parts(url)
    kwargs.pop("timeout", None)  # a BlockingConnectionPool's option
    manager = redis.sentinel.Sentinel(hosts, sentinel_kwargs=_sentinel_kwargs(given, kwargs))  # type: ignore[no-untyped-call]
    return redis.sentinel.SentinelConnectionPool(service, manager, db=db, **{**given, **kwargs})  # type: ignore[no-untyped-call]


def async_pool(url: str, **kwargs: Any) -> aioredis.ConnectionPool:
    """An asyncio pool for one Redis, or for the master the sentinels name."""
    if not is_sentinel(url):
        return aioredis.ConnectionPool.from_url(url, **kwargs)
    hosts, service, db, given = sentinel_parts(url)
    manager = asentinel.Sentinel(hosts, sentinel_kwargs=_sentinel_kwargs(given, kwargs))  # type: ignore[no-untyped-call]
    return asentinel.SentinelConnectionPool(service, manager, db=db, **{**given, **kwargs})  # type: ignore[no-untyped-call]


def describe(url: str, pool: redis.ConnectionPool) -> str:
    """Where a pool connects, for messages: ``host:port/db``, ``unix:path/db``, or the
    sentinels and service."""
    db = url_db(url)
    if is_sentinel(url):
        hosts, service, _, _ = sentinel_parts(url)
        return f"sentinel {','.join(f'{h}:{p}' for h, p in hosts)}/{service}/{db}"
    kw = pool.connection_kwargs
    if "path" in kw:
        return f"unix:{kw['path']}/{db}"
    return f"{kw.get('host', '?')}:{kw.get('port', '')}/{db}"
