"""The Redis presence store (:class:`~tidings.brokers.base.PresenceStore`).

Two keys per topic, as centrifuge does::

    tidings:{rooms.lobby}:presence  ZSET    connection id -> expiry (ms, Redis clock)
    tidings:{rooms.lobby}:members   HASH    connection id -> member info (JSON)

Entries expire ``presence_ttl`` seconds (default 60) after they were last written;
reading drops the expired ones. The store rewrites its own process's entries every
third of that (:meth:`RedisPresence.refresh`, a task the broker runs between ``start``
and ``close``), so a live connection's entry never expires and a crashed process's
entries disappear within the TTL. A connection that closes normally removes its entry
at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from tidings.brokers.base import PresenceStore
from tidings.brokers.redis.options import Names, Options, ms
from tidings.exceptions import BrokerError

logger = logging.getLogger("tidings.brokers.redis")

# Runs one of the broker's scripts by name: (script, keys, args) -> reply.
Call = Callable[[str, list[str], list[Any]], Awaitable[Any]]


class RedisPresence(PresenceStore):
    def __init__(self, call: Call, names: Names, options: Options, where: str) -> None:
        self._call = call
        self._names = names
        self._options = options
        self._where = where
        self._present: dict[str, dict[str, str]] = {}  # this process's entries
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock_of_loop: asyncio.Lock | None = None

    def _lock(self) -> asyncio.Lock:
        """Keeps a removal from interleaving with a refresh of the same entry (one lock
        per event loop)."""
        loop = asyncio.get_running_loop()
        if self._lock_of_loop is None or self._loop is not loop:
            self._lock_of_loop, self._loop = asyncio.Lock(), loop
        return self._lock_of_loop

    def _keys(self, topic: str) -> list[str]:
        return [self._names.key(topic, "presence"), self._names.key(topic, "members")]

    async def add(self, topic: str, conn_id: str, info: dict[str, Any]) -> None:
        info_json = json.dumps(info, separators=(",", ":"))
        await self._write(topic, {conn_id: info_json})
        self._present.setdefault(topic, {})[conn_id] = info_json

    async def _write(self, topic: str, entries: dict[str, str]) -> None:
        args: list[Any] = [ms(self._options.presence_ttl)]
        for conn_id, info_json in entries.items():
            args += [conn_id, info_json]
        try:
            await self._call("presence_add", self._keys(topic), args)
        except (redis.RedisError, OSError) as e:
            raise BrokerError(f"Could not write presence to Redis at {self._where}: {e}") from e

    async def remove(self, topic: str, conn_id: str) -> None:
        entries = self._present.get(topic)
        if entries is None or conn_id not in entries:
            return  # only this process adds its connections' entries: nothing in Redis
        del entries[conn_id]
        if not entries:
            del self._present[topic]
        async with self._lock():  # not interleaved with a refresh of this entry
            try:
                await self._call("presence_remove", self._keys(topic), [conn_id])
            except (redis.RedisError, OSError) as e:
                where = f"Redis at {self._where}"
                raise BrokerError(f"Could not remove presence on {where}: {e}") from e

    async def entries(self, topic: str) -> dict[str, dict[str, Any]]:
        try:
            flat = await self._call("presence", self._keys(topic), [])
        except (redis.RedisError, OSError) as e:
            raise BrokerError(f"Could not read presence from Redis at {self._where}: {e}") from e
        return {flat[i]: json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def refresh(self) -> None:
        """Rewrite this process's entries every third of their TTL, so they outlive it only
        by the TTL. Errors are logged and retried at the next round; it never stops."""
        failing = False
        while True:
            await asyncio.sleep(self._options.presence_ttl / 3)
            try:
                for topic in list(self._present):
                    async with self._lock():
                        entries = self._present.get(topic)
                        if entries:
                            await self._write(topic, dict(entries))
                if failing:
                    logger.warning("presence refresh works again")
                failing = False
            except Exception as e:
                if not failing:
                    logger.warning("presence refresh failed (retrying): %s", e)
                failing = True
