"""Delivery: one LISTEN connection per process, woken by NOTIFY, reading from the table.

A notification only says "topic X has something new" (its payload is the topic), and
PostgreSQL keeps none for a connection that is not listening. So the listener keeps,
per topic this process is subscribed to, the last position it delivered, and a
notification makes it read the messages after that position from the messages table
(:data:`READ`: one query for every topic woken at once). What it reads it delivers, in
offset order, each message once. A notification is only ever a hint:

- after every (re)connect, once ``LISTEN`` is in place, every topic is read, so what
  was published while it was away is delivered first;
- every ``keepalive`` seconds it asks the server ``SELECT 1`` (a dead or frozen server
  is noticed within two ``keepalive``), and reads every topic again, so nothing waits
  longer than that even if a notification went astray.

When offsets are missing (trimmed before it could read them: more than
``max(HISTORY_SIZE, KEEP)`` messages behind) or the topic's epoch changed, it logs a
warning and goes on from what is there: clients resuming with ``since`` then get
``recovered=false``. It never stops by itself: failures are logged, retried with
backoff, and visible in :meth:`Listener.health`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from tidings.brokers.postgres.options import Options
from tidings.brokers.postgres.pool import Conn, connect
from tidings.core.messages import EMPTY, Message, Position
from tidings.exceptions import BrokerError

logger = logging.getLogger("tidings.brokers.postgres")

# For each (topic, epoch, last offset): the topic's epoch and head, and its messages
# after the last offset (after 0 when the epoch is not the one asked about).
READ = """
SELECT w.topic, t.epoch, t.seq, m.seq, m.at, m.event, m.data, m.formats
FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS w(topic, epoch, last)
LEFT JOIN {p}_topics t ON t.topic = w.topic
LEFT JOIN {p}_messages m ON m.topic = w.topic
  AND m.seq > CASE WHEN t.epoch = w.epoch THEN w.last ELSE 0 END
ORDER BY w.topic, m.seq
"""

# Seconds between two reads: under a stream of publishes a read then returns several
# messages instead of one (its cost is mostly per read); a message published after a
# quiet moment is read at once.
READ_GAP = 0.002

Run = Callable[[Callable[[Conn], Awaitable[Any]]], Awaitable[Any]]
Deliver = Callable[[list[Message]], None]


class Listener:
    """The LISTEN connection and the topics it reads; :meth:`run` supervises it.

    ``run_query`` runs a piece of work on a pooled connection (with the broker's
    retries); ``deliver`` takes the messages read, in order.
    """

    def __init__(
        self, params: Callable[[], dict[str, Any]], options: Options, where: str,
        run_query: Run,
    ) -> None:  # fmt: skip
        self._params = params
        self._options = options
        self._where = where
        self._run_query = run_query
        self._read_sql = READ.replace("{p}", options.prefix)
        self.deliver: Deliver | None = None
        self._topics: dict[str, Position | None] = {}  # the last delivered; None: not yet
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self.connected = False
        self._reconnects = 0
        self._last_error: str | None = None
        self._changed = time.time()

    def health(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "reconnects": self._reconnects,
            "last_error": self._last_error,
            "since": self._changed,
            "topics": len(self._topics),
            "postgres": self._where,
        }

    # -- subscriptions ---------------------------------------------------------------
    async def subscribe(self, topic: str, head: Callable[[], Awaitable[Position]]) -> None:
        """Deliver ``topic``'s messages after its position now (``head()``, read once
        ``LISTEN`` is in place, so no later publish goes unnoticed)."""
        if topic in self._topics:
            return
        self._topics[topic] = None
        try:
            await asyncio.wait_for(self._up.wait(), self._options.connect_timeout + 2)
            position = await head()
        except BaseException as e:
            self._topics.pop(topic, None)
            if isinstance(e, TimeoutError):
                raise BrokerError(
                    f"not listening to PostgreSQL at {self._where} (last error: "
                    f"{self._last_error}): cannot subscribe to {topic!r}"
                ) from None
            raise
        if topic in self._topics and self._topics[topic] is None:
            self._topics[topic] = position

    def unsubscribe(self, topic: str) -> None:
        self._topics.pop(topic, None)
        self._dirty.discard(topic)

    def subscribed(self) -> list[str]:
        return list(self._topics)

    def reset(self) -> None:
        """New events for the loop about to run the listener (the engine's loop is made
        anew after each close)."""
        self._wake, self._up = asyncio.Event(), asyncio.Event()

    def clear(self) -> None:
        self._topics.clear()
        self._dirty.clear()
        self.deliver = None

    def _mark(self, topics: Any) -> None:
        self._dirty.update(t for t in topics if t in self._topics)
        if self._dirty:
            self._wake.set()

    # -- the connection --------------------------------------------------------------
    async def run(self) -> None:
        """Listen and read until cancelled; on any failure, reconnect with backoff."""
        reader = asyncio.get_running_loop().create_task(self._reader())
        failures, warned = 0, 0.0
        channel = self._options.prefix
        try:
            while True:
                held = False
                try:
                    params = {**self._params(), "application_name": f"{channel} listener"}
                    conn = await connect(params, self._options.connect_timeout)
                    async with conn:
                        await conn.execute(f"LISTEN {channel}")
                        self._connected()
                        held_since = time.monotonic()
                        try:
                            await self._listen(conn)
                        finally:
                            held = time.monotonic() - held_since > 10
                except Exception as e:
                    failures = 1 if held else failures + 1
                    if self.connected or time.monotonic() - warned > 30:
                        warned = time.monotonic()
                        self._down(e, failures)
                    self._last_error = f"{type(e).__name__}: {e}".strip()
                self._set_down()
                await asyncio.sleep(min(2.0, 0.05 * 2**failures) * random.uniform(0.5, 1))
        finally:
            self._set_down()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def _connected(self) -> None:
        if self._reconnects or self._last_error is not None:
            logger.warning(
                "PostgreSQL listener at %s: connected again after %.1fs; reading %d topic(s)",
                self._where, time.time() - self._changed, len(self._topics),
            )  # fmt: skip
        else:
            logger.info("PostgreSQL listener at %s: connected", self._where)
        self.connected = True
        self._changed = time.time()
        self._up.set()
        self._mark(self._topics)  # what came while nobody listened

    def _set_down(self) -> None:
        self._up.clear()
        if self.connected:
            self.connected = False
            self._reconnects += 1
            self._changed = time.time()

    def _down(self, error: BaseException, failures: int) -> None:
        if isinstance(error, (psycopg.Error, OSError, TimeoutError)):
            logger.warning(
                "PostgreSQL listener at %s: %s: %s; reconnecting (attempt %d)",
                self._where, type(error).__name__, str(error).strip(), failures,
            )  # fmt: skip
        else:
            logger.exception("PostgreSQL listener at %s failed; reconnecting", self._where)

    async def _listen(self, conn: Conn) -> None:
        keepalive = self._options.keepalive
        while True:
            async for notify in conn.notifies(timeout=keepalive):
                self._mark((notify.payload,))
            try:
                await asyncio.wait_for(conn.execute("SELECT 1"), keepalive)
            except TimeoutError:
                raise TimeoutError(f"no answer to SELECT 1 within {keepalive}s") from None
            self._mark(self._topics)  # a safety net: read them all now and then

    # -- reading ---------------------------------------------------------------------
    async def _reader(self) -> None:
        """Read the woken topics, one round at a time (so deliveries keep their order)."""
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            asks = {t: p for t in self._dirty if (p := self._topics.get(t)) is not None}
            self._dirty.clear()
            if not asks:
                continue
            try:
                rows = await self._run_query(functools.partial(self._read, asks=asks))
            except Exception as e:
                failures += 1
                logger.warning("PostgreSQL listener: reading %d topic(s) failed: %s",
                               len(asks), str(e).strip())  # fmt: skip
                self._mark(asks)
                await asyncio.sleep(min(2.0, 0.05 * 2**failures))
                continue
            failures = 0
            self._take(asks, rows)
            await asyncio.sleep(READ_GAP)  # what is published meanwhile waits for one read

    async def _read(self, conn: Conn, asks: dict[str, Position]) -> list[tuple[Any, ...]]:
        topics = list(asks)
        epochs = [asks[t].epoch for t in topics]
        lasts = [asks[t].offset for t in topics]
        cursor = await conn.execute(self._read_sql, (topics, epochs, lasts))
        return await cursor.fetchall()

    def _take(self, asks: dict[str, Position], rows: list[tuple[Any, ...]]) -> None:
        """Deliver what was read; rows come topic by topic, in offset order."""
        out: list[Message] = []
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            groups.setdefault(row[0], []).append(row)
        for topic, group in groups.items():
            if self._topics.get(topic) != asks[topic]:
                self._mark((topic,))  # unsubscribed, or subscribed again meanwhile
                continue
            self._topics[topic] = self._follow(topic, asks[topic], group, out)
        deliver = self.deliver
        if out and deliver is not None:
            deliver(out)

    def _follow(
        self, topic: str, last: Position, group: list[tuple[Any, ...]], out: list[Message]
    ) -> Position:
        """Append ``topic``'s new messages to ``out``; return its last position."""
        epoch, head = group[0][1], group[0][2]
        if epoch is None:  # freed, or never published: its next publish makes an epoch
            return last
        if last.epoch != epoch:
            if last != EMPTY:
                logger.warning("%r: new epoch %s after %s: its history was lost",
                               topic, epoch, last)  # fmt: skip
            last = Position(epoch, 0)
        for _, _, _, seq, at, event, data, formats in group:
            if seq is None or seq <= last.offset:
                continue
            if seq != last.offset + 1:
                self._lost(topic, last, seq - 1)
            last = Position(epoch, seq)
            out.append(Message(topic, event, data, last, at, formats))
        if head > last.offset:
            self._lost(topic, last, head)
            last = Position(epoch, head)
        return last

    @staticmethod
    def _lost(topic: str, last: Position, upto: int) -> None:
        logger.warning(
            "%r: messages %d..%d of epoch %s were trimmed before this process read them; "
            "clients resuming with since get recovered=false", topic, last.offset + 1, upto,
            last.epoch,
        )  # fmt: skip
