"""A Redis Cluster's slots: which master owns what, and the shard channels.

:class:`Clients` is one event loop's view of the cluster: redis-py's
:class:`~redis.asyncio.cluster.RedisCluster` for the slot map (``CLUSTER SLOTS``, read
again after a MOVED or a failure), and a plain client per master, on which the broker
sends its commands itself: a script and its ``WAIT`` must share a connection, which
redis-py's cluster client does not offer (see :mod:`~tidings.brokers.redis.cluster`).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ClusterDownError, MovedError, TryAgainError

from tidings.brokers.redis.options import Names
from tidings.brokers.redis.scripts import SOURCES

logger = logging.getLogger("tidings.brokers.redis")

# Failures after which the slot map is read again and the command sent again.
MOVED = (redis.ConnectionError, redis.TimeoutError, MovedError, ClusterDownError, TryAgainError,
         redis.ReadOnlyError)  # fmt: skip


class ShardNames(Names):
    """:class:`Names`, plus the fixed set of shard channels topics are spread over:
    ``prefix:s:{n}`` for n in 0..shards-1 (the hash tag spreads them over the masters)."""

    __slots__ = ("shards",)

    def __init__(self, prefix: str, shards: int) -> None:
        super().__init__(prefix, 0)
        self.shards = shards

    def shard(self, topic: str) -> str:
        return self.shard_channel(zlib.crc32(topic.encode()) % self.shards)

    def shard_channel(self, n: int) -> str:
        return f"{self.prefix}:s:{{{n}}}"

    def topic_of_key(self, key: str) -> str:
        """The topic of one of its keys (``prefix:{topic}:meta``)."""
        return key[len(self.prefix) + 2 : key.rindex("}")]


def startup_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """``redis+cluster://h:p,h:p/?opts``: the hosts, and redis-py's options."""
    parts = urlsplit(url)
    hosts = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or "127.0.0.1", int(port or 6379)))
    given = dict(parse_qsl(parts.query))
    if parts.username:
        given["username"] = unquote(parts.username)
    if parts.password:
        given["password"] = unquote(parts.password)
    return hosts, given


class Clients:
    """One event loop's view of the cluster: the slot map, a client per master, the
    scripts' SHAs."""

    def __init__(self, hosts: list[tuple[str, int]], kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs
        self.cluster = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in hosts],
            decode_responses=True,
            socket_timeout=kwargs["socket_timeout"],
            socket_connect_timeout=kwargs["socket_connect_timeout"],
            **{k: kwargs[k] for k in ("username", "password") if k in kwargs},
        )
        self._nodes: dict[str, aioredis.Redis] = {}
        self.scripts = {name: AsyncScript(self.cluster, SOURCES[name]) for name in SOURCES}
        self._lock = asyncio.Lock()
        self._ready = False

    async def ready(self) -> None:
        if not self._ready:
            await self.cluster.initialize()
            self._ready = True

    def primary(self, slot: int) -> ClusterNode:
        return self.cluster.nodes_manager.get_node_from_slot(slot)

    def replicas(self, slot: int) -> int:
        return len(self.cluster.nodes_manager.slots_cache.get(slot) or [None]) - 1

    def client(self, node: ClusterNode) -> aioredis.Redis:
        client = self._nodes.get(node.name)
        if client is None:
            # Blocking: a batch's parts for one master wait for its connections in turn.
            pool = aioredis.BlockingConnectionPool(
                host=node.host, port=node.port, retry=AsyncRetry(NoBackoff(), 0),
                timeout=self.kwargs["socket_timeout"], **self.kwargs,
            )  # fmt: skip
            client = self._nodes[node.name] = aioredis.Redis(connection_pool=pool)
        return client

    async def refresh(self) -> None:
        """Read the slot map again (once, for all callers failing at the same time)."""
        if self._lock.locked():
            async with self._lock:
                return
        async with self._lock:
            try:
                await self.cluster.nodes_manager.initialize()
            except (redis.RedisError, OSError) as e:
                logger.debug("Redis Cluster: could not refresh the slot map: %s", e)

    async def close(self) -> None:
        for client in self._nodes.values():
            await client.aclose(close_connection_pool=True)
        self._nodes.clear()
        await self.cluster.aclose()
