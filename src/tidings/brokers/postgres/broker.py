"""The PostgreSQL broker itself: publish, history, and the tasks it runs.

**Publish** is one call of the publish function per batch of publishes
(:mod:`~tidings.brokers.postgres.batches`, :mod:`~tidings.brokers.postgres.schema`),
in one transaction: for each message, the next offset of its topic (the topic's row
stays locked until commit, so offsets are contiguous and every process sees a topic
in offset order, whoever publishes), the message into the messages table, a trim, and
a NOTIFY, sent at commit. A publish returns its position once the transaction has
committed: the message is then in the table, where every listener reads it
(:mod:`~tidings.brokers.postgres.listener`). The call carries a receipt, so it is
retried after a broken connection without publishing twice, and a deadline, so a
publish stuck in a dead socket is refused when it finally arrives instead of
appearing after its caller was told it failed.

**History** reads the topics row and the messages after ``since`` in one query; it
serves only what the topic's policy keeps (``size`` newest, ``ttl`` seconds), even
though the table may hold more for a little while (``KEEP``, for listeners). A topic
without a row stands at :data:`~tidings.core.messages.EMPTY` and the read writes
nothing. A publish that finds no row makes a new epoch: the topic's first publish, and
again after the topic was freed (idle ``meta_ttl`` seconds, by :mod:`sweep`), or after
its rows were deleted by hand. PostgreSQL is durable, so a server restart changes no
epoch and loses no acknowledged message.

All database work runs on the broker's :class:`~tidings.brokers.postgres.engine.Engine`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors

from tidings.brokers.base import Broker, Deliver, HistoryResult
from tidings.brokers.postgres.batches import Batches, Publish
from tidings.brokers.postgres.engine import Engine
from tidings.brokers.postgres.listener import Listener
from tidings.brokers.postgres.options import split_url
from tidings.brokers.postgres.pool import Conn, Pool
from tidings.brokers.postgres.presence import PostgresPresence
from tidings.brokers.postgres.schema import acreate
from tidings.brokers.postgres.sweep import Sweep
from tidings.core.messages import EMPTY, HistoryPolicy, Message, Position
from tidings.exceptions import BrokerError

logger = logging.getLogger("tidings.brokers.postgres")
T = TypeVar("T")

KEEP = 1000  # messages the table keeps per topic at least, for listeners to read
NOW = "extract(epoch FROM clock_timestamp())"
# The topic's row and, when asked, the messages after ``since`` that its policy keeps;
# a read refreshes ``touched`` (so the topic is not freed) at most every few seconds.
HISTORY = f"""
WITH touch AS (
  UPDATE {{p}}_topics SET touched = {NOW} WHERE topic = %(topic)s AND touched < {NOW} - %(every)s
)
SELECT t.epoch, t.seq, m.seq, m.at, m.event, m.data, m.formats
FROM {{p}}_topics t LEFT JOIN {{p}}_messages m ON m.topic = t.topic
  AND (t.epoch = %(epoch)s OR (%(epoch)s = '0' AND %(since)s = 0))
  AND m.seq > %(since)s AND t.seq - %(since)s <= t.size
  AND m.at >= {NOW} - t.ttl
WHERE t.topic = %(topic)s
ORDER BY m.seq
"""
RETRY = (psycopg.OperationalError, errors.DeadlockDetected, errors.SerializationFailure)


class PostgresBroker(Broker):
    presence: PostgresPresence

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.options, self._where = split_url(url)
        opts = self.options
        self.where = self._where.describe()
        self._engine = Engine(f"tidings-postgres-{opts.prefix}")
        self._pool: Pool | None = None  # on the engine's loop, made there
        self._batches: Batches | None = None
        self._schema_made = False
        self._sql = {"history": HISTORY.replace("{p}", opts.prefix)}
        self._publish_sql = (
            f"SELECT {opts.prefix}_publish(%s::text, %s::text, %s::float8, %s::int, %s::text[], "
            "%s::text[], %s::text[], %s::text[], %s::int[], %s::float8[])"
        )
        self._listener = Listener(self._where.params, opts, self.where, self._query)
        self.presence = PostgresPresence(self._run, opts.prefix, opts.presence_ttl)
        self._sweep = Sweep(self._run, opts, self._listener.subscribed)
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None

    # -- running queries ---------------------------------------------------------------
    async def _setup(self, conn: Conn) -> None:
        if not self._schema_made:
            await acreate(conn, self.options.prefix)
            self._schema_made = True

    def _the_pool(self) -> Pool:
        """The pool, made on first use on the engine's loop."""
        if self._pool is None:
            opts = self.options
            self._pool = Pool(self._where.params, opts.max_connections, opts.connect_timeout,
                              self._setup)  # fmt: skip
        return self._pool

    async def _query(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """On the engine: ``work`` on a pooled connection, retried after a broken
        connection or a deadlock (every piece of work may safely run twice) until
        ``publish_timeout``; then what failed is raised."""
        opts = self.options
        give_up = time.monotonic() + opts.publish_timeout
        failures = 0
        while True:
            try:
                return await self._the_pool().run(work, max(0.1, give_up - time.monotonic()))
            except (*RETRY, TimeoutError):
                failures += 1
                pause = min(1.0, 0.05 * 2**failures) * (0.5 + secrets.randbelow(500) / 1000)
                if failures > opts.retries or time.monotonic() + pause >= give_up:
                    raise
                await asyncio.sleep(pause)

    async def _run(self, what: str, work: Callable[[Conn], Awaitable[T]]) -> T:
        """From any loop: :meth:`_query` on the engine; errors become ``BrokerError``."""
        try:
            return await self._engine.acall(self._query(work))
        except (psycopg.Error, OSError, TimeoutError) as e:
            raise BrokerError(f"Could not {what} on PostgreSQL at {self.where}: {_say(e)}") from e

    # -- publishing -------------------------------------------------------------------
    def _publish(self, topic: str, event: str, data_json: str, history: HistoryPolicy,
                 formats_json: str | None) -> Publish:  # fmt: skip
        on = history.enabled
        return Publish(
            topic,
            event,
            data_json,
            formats_json,
            history.size if on else 0,
            history.ttl if on else 0.0,
            time.time() + self.options.publish_timeout,
        )

    async def _submit(self, publish: Publish) -> Position:
        """On the engine: queue ``publish`` for the next batch."""
        if self._batches is None:
            self._batches = Batches(self._send)
        return await self._batches.submit(publish)

    def publish(
        self,
        topic: str,
        event: str,
        data_json: str,
        history: HistoryPolicy,
        formats_json: str | None = None,
    ) -> Position:
        publish = self._publish(topic, event, data_json, history, formats_json)
        try:
            return self._engine.call(self._submit(publish), self.options.publish_timeout + 1)
        except (psycopg.Error, OSError, TimeoutError) as e:
            raise BrokerError(self._unpublished(topic, e)) from e

    async def apublish(
        self,
        topic: str,
        event: str,
        data_json: str,
        history: HistoryPolicy,
        formats_json: str | None = None,
    ) -> Position:
        publish = self._publish(topic, event, data_json, history, formats_json)
        try:
            return await self._engine.acall(self._submit(publish))
        except (psycopg.Error, OSError, TimeoutError) as e:
            raise BrokerError(self._unpublished(topic, e)) from e

    def _unpublished(self, topic: str, error: BaseException) -> str:
        return (
            f"Could not publish to {topic!r} on PostgreSQL at {self.where}: {_say(error)}. "
            "It was not published, unless PostgreSQL committed it just as the connection failed."
        )

    async def _send(self, batch: list[Publish]) -> list[Position]:
        """Publish ``batch`` in one transaction, sorted by topic (see schema.PUBLISH)."""
        order = sorted(range(len(batch)), key=lambda i: batch[i].topic)
        ordered = [batch[i] for i in order]
        args = (
            secrets.token_hex(8),
            secrets.token_hex(4),
            min(p.deadline for p in batch),
            KEEP,
            [p.topic for p in ordered],
            [p.event for p in ordered],
            [p.data for p in ordered],
            [p.formats for p in ordered],
            [p.size for p in ordered],
            [p.ttl for p in ordered],
        )

        async def send(conn: Conn) -> str:
            row = await (await conn.execute(self._publish_sql, args)).fetchone()
            assert row is not None
            return str(row[0])

        lines = (await self._query(send)).splitlines()
        positions: list[Position] = [EMPTY] * len(batch)
        for i, line in zip(order, lines, strict=True):
            epoch, _, offset = line.partition(" ")
            positions[i] = Position(epoch, int(offset))
        return positions

    # -- history ------------------------------------------------------------------------
    async def history(self, topic: str, since: Position | None) -> HistoryResult:
        params = {
            "topic": topic,
            "every": min(60.0, self.options.meta_ttl / 4),
            "epoch": None if since is None else since.epoch,
            "since": 0 if since is None else since.offset,
        }

        async def read(conn: Conn) -> list[tuple[Any, ...]]:
            return await (await conn.execute(self._sql["history"], params)).fetchall()

        rows = await self._run(f"read {topic!r}'s history", read)
        if not rows:  # nothing kept: store nothing either
            return HistoryResult(EMPTY, recovered=since is None or since == EMPTY)
        position = Position(rows[0][0], rows[0][1])
        if since is None:
            return HistoryResult(position, recovered=True)
        if since == EMPTY:  # seen empty: this epoch was made since
            since = Position(position.epoch, 0)
        if since.epoch != position.epoch or since.offset > position.offset:
            return HistoryResult(position, recovered=False)
        if since.offset == position.offset:
            return HistoryResult(position, recovered=True)
        messages = tuple(
            Message(topic, event, data, Position(position.epoch, seq), at, formats)
            for _, _, seq, at, event, data, formats in rows
            if seq is not None
        )
        expected = range(since.offset + 1, position.offset + 1)
        if [m.position.offset for m in messages] != list(expected):
            return HistoryResult(position, recovered=False)
        return HistoryResult(position, recovered=True, messages=messages)

    # -- delivery -----------------------------------------------------------------------
    async def start(self, deliver: Deliver) -> None:
        self._loop = asyncio.get_running_loop()
        self._deliver = deliver
        self._listener.deliver = self._hand_over
        if not self._tasks:
            self._tasks = await self._engine.acall(self._start_tasks())

    async def _start_tasks(self) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        self._listener.reset()
        tasks = [
            loop.create_task(self._listener.run(), name="tidings-postgres-listener"),
            loop.create_task(self.presence.refresh(), name="tidings-postgres-presence"),
            loop.create_task(self._sweep.run(), name="tidings-postgres-sweep"),
        ]
        for task in tasks:
            task.add_done_callback(self._ended)
        return tasks

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The tasks run until close(): say so loudly if one ends any other way."""
        if task in self._tasks:
            self._listener.connected = False
            error = None if task.cancelled() else task.exception()
            logger.critical("%s ended (%r): this process no longer gets messages from "
                            "PostgreSQL", task.get_name(), error)  # fmt: skip

    def _hand_over(self, messages: list[Message]) -> None:
        """On the engine: pass what the listener read to the loop that started us."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver_all, messages)

    def _deliver_all(self, messages: list[Message]) -> None:
        deliver = self._deliver
        if deliver is None:
            return
        for message in messages:
            try:
                deliver(message)
            except Exception:
                logger.exception("delivering %r failed", message)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        self._deliver = None
        self._loop = None

        async def stop() -> None:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._listener.clear()
            self.presence.clear()
            pool, self._pool, self._batches = self._pool, None, None
            if pool is not None:
                await pool.close()

        if self._engine.running():
            await self._engine.acall(stop())
        self._engine.stop()

    def health(self) -> dict[str, Any]:
        """``connected`` while the listener's connection is up (and answered its last
        ``SELECT 1``); how often it came back, the last error."""
        return self._listener.health()

    async def subscribe(self, topic: str) -> None:
        if not self._tasks:
            raise BrokerError("The PostgreSQL broker is not started: call start() first.")

        async def head() -> Position:
            return (await self.history(topic, None)).position

        await self._engine.acall(self._listener.subscribe(topic, head))

    async def unsubscribe(self, topic: str) -> None:
        async def unsubscribe() -> None:
            self._listener.unsubscribe(topic)

        if self._engine.running():
            await self._engine.acall(unsubscribe())


def _say(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0] if isinstance(error, psycopg.Error) else text
