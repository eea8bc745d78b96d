"""The PostgreSQL presence store (:class:`~tidings.brokers.base.PresenceStore`).

One table, ``<prefix>_presence``: (topic, connection id) -> member info (JSON) and an
expiry (server clock). An entry expires ``presence_ttl`` seconds (default 60) after it
was last written; reads skip expired entries and the broker's sweep deletes them. The
store rewrites its own process's entries every third of the TTL, all of them in one
statement (:meth:`PostgresPresence.refresh`, a task on the broker's engine between
``start`` and ``close``), so a live connection's entry never expires and a crashed
process's entries are gone within the TTL. A connection that closes normally removes
its entry at once.

Every method runs its query on the broker's engine (``run``), so it may be awaited
from any event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from tidings.brokers.base import PresenceStore
from tidings.brokers.postgres.engine import every
from tidings.brokers.postgres.pool import Conn

NOW = "extract(epoch FROM clock_timestamp())"
WRITE = f"""
INSERT INTO {{p}}_presence AS p (topic, conn_id, info, expires)
SELECT t, c, i, {NOW} + %s FROM unnest(%s::text[], %s::text[], %s::text[]) AS e(t, c, i)
ON CONFLICT (topic, conn_id) DO UPDATE SET info = excluded.info, expires = excluded.expires
"""
REMOVE = "DELETE FROM {p}_presence WHERE topic = %s AND conn_id = %s"
ENTRIES = f"SELECT conn_id, info FROM {{p}}_presence WHERE topic = %s AND expires > {NOW}"

# Runs a piece of work on a pooled connection, on the engine, with the broker's retries
# and errors (BrokerError), from whichever loop awaits it: (what, work) -> its result.
Run = Callable[[str, Callable[[Conn], Awaitable[Any]]], Awaitable[Any]]


class PostgresPresence(PresenceStore):
    def __init__(self, run: Run, prefix: str, ttl: float) -> None:
        self._run = run
        self._sql = {name: sql.replace("{p}", prefix) for name, sql in
                     (("write", WRITE), ("remove", REMOVE), ("entries", ENTRIES))}  # fmt: skip
        self.ttl = ttl
        self._present: dict[tuple[str, str], str] = {}  # this process's entries
        self._lock: asyncio.Lock | None = None  # on the engine's loop

    def _locked(self) -> asyncio.Lock:
        """Keeps a removal from interleaving with a refresh (used on the engine only)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def add(self, topic: str, conn_id: str, info: dict[str, Any]) -> None:
        info_json = json.dumps(info, separators=(",", ":"))
        self._present[topic, conn_id] = info_json
        await self._run("write presence", lambda c: self._write(c, {(topic, conn_id): info_json}))

    async def _write(self, conn: Conn, entries: dict[tuple[str, str], str]) -> None:
        topics, conns = [t for t, _ in entries], [c for _, c in entries]
        await conn.execute(self._sql["write"], (self.ttl, topics, conns, list(entries.values())))

    async def remove(self, topic: str, conn_id: str) -> None:
        if self._present.pop((topic, conn_id), None) is None:
            return  # only this process adds its connections' entries: nothing stored

        async def remove(conn: Conn) -> None:
            async with self._locked():
                await conn.execute(self._sql["remove"], (topic, conn_id))

        await self._run("remove presence", remove)

    async def entries(self, topic: str) -> dict[str, dict[str, Any]]:
        async def read(conn: Conn) -> list[tuple[Any, ...]]:
            return await (await conn.execute(self._sql["entries"], (topic,))).fetchall()

        rows = await self._run("read presence", read)
        return {conn_id: json.loads(info) for conn_id, info in rows}

    async def refresh(self) -> None:
        """Rewrite this process's entries every third of the TTL (on the engine), so
        they outlive it by the TTL at most. Errors are logged; it never stops."""

        async def write(conn: Conn) -> None:
            async with self._locked():
                if self._present:
                    await self._write(conn, dict(self._present))

        async def step() -> None:
            if self._present:
                await self._run("refresh presence", write)

        await every(self.ttl / 3, "presence refresh", step)

    def clear(self) -> None:
        self._present.clear()
        self._lock = None
