"""Delivery: this process's one pub/sub connection, supervised.

One pub/sub connection per process, one channel per topic that has local subscribers,
driven by a task (:meth:`PubSubListener.run`) the broker runs between ``start`` and
``close``. It tracks the last offset delivered per topic; after a reconnect, or when the
live stream skips offsets, it reads the gap from history and delivers it first, so
local subscribers see every message once, in order. When history cannot cover the gap
it logs a warning and goes on with live messages: clients that resume with ``since``
then get ``recovered=False``. It never stops by itself: failures are logged, retried
with backoff, and visible in :meth:`PubSubListener.health`.

A message on a channel is ``"<epoch> <offset> <ms> <event> <formats length>\\n"``
followed by the formats JSON (if any) and the data JSON (``lua/publish.lua``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import AbstractBackoff, NoBackoff
from redis.utils import HIREDIS_AVAILABLE

from tidings.brokers.base import Deliver, HistoryResult
from tidings.brokers.redis.options import Names, Options
from tidings.brokers.redis.pools import async_pool
from tidings.core.messages import EMPTY, Message, Position
from tidings.exceptions import BrokerError

if HIREDIS_AVAILABLE:
    import hiredis
else:  # pragma: no cover - the redis extra installs it
    hiredis = None  # type: ignore[assignment]

logger = logging.getLogger("tidings.brokers.redis")

History = Callable[[str, Position | None], Awaitable[HistoryResult]]


class _Topic:
    """A topic this process is subscribed to: the last position delivered, and state."""

    __slots__ = ("last", "ready", "resync")

    def __init__(self, ready: asyncio.Future[None]) -> None:
        self.last: Position | None = None  # None: take the next live message as it comes
        self.ready = ready  # resolved when Redis confirms the subscription
        self.resync = False  # fill the gap from history once re-subscribed


Gap = tuple[str, _Topic, Position, Message]  # what to fill from history, and what came


class PubSubListener:
    """The pub/sub connection and the topics it carries; :meth:`run` supervises it.

    ``fast``: read the socket with hiredis directly (see :meth:`_listen`).

    ``history`` is the broker's :meth:`~tidings.brokers.base.Broker.history`, to fill gaps.
    """

    fast = True

    def __init__(
        self,
        redis_url: str,
        pool_kwargs: dict[str, Any],
        names: Names,
        options: Options,
        backoff: AbstractBackoff,
        history: History,
        where: str,
    ) -> None:
        self._redis_url = redis_url
        self._pool_kwargs = pool_kwargs
        self._names = names
        self._options = options
        self._backoff = backoff
        self._history = history
        self._where = where
        self._timeout = float(pool_kwargs["socket_timeout"])
        self.deliver: Deliver | None = None
        self.went_back: Callable[[str, Position], Awaitable[None]] | None = None  # new epoch
        self._topics: dict[str, _Topic] = {}
        self._pubsub: PubSub | None = None
        self._inflight: dict[str, int] = {}  # SUBSCRIBEs sent on this connection, unconfirmed
        # Health.
        self.connected = False
        self._reconnects = 0
        self._last_error: str | None = None
        self._changed = time.time()
        self._warned = 0.0  # when a failure was last logged as a warning

    def health(self) -> dict[str, Any]:
        """Whether the connection is up, how often it came back, the last error."""
        return {"connected": self.connected, "reconnects": self._reconnects,
                "last_error": self._last_error, "since": self._changed,
                "topics": len(self._topics), "redis": self._where}  # fmt: skip

    def clear(self) -> None:
        """Forget every topic and the callback (the broker was closed)."""
        for sub in self._topics.values():
            if not sub.ready.done():
                sub.ready.set_result(None)
        self._topics.clear()
        self.deliver = None

    # -- subscriptions -------------------------------------------------------------------
    async def subscribe(self, topic: str) -> None:
        """Subscribe ``topic`` and wait until Redis confirms it; deliveries then start
        after the topic's position at that moment."""
        sub = self._topics.get(topic)
        if sub is None:
            sub = self._topics[topic] = _Topic(asyncio.get_running_loop().create_future())
            if self._pubsub is not None:
                await self._send_subscribe(self._pubsub, [topic])
        try:
            await asyncio.wait_for(asyncio.shield(sub.ready), self._timeout + 2)
            position = (await self._history(topic, None)).position
        except BaseException as e:
            if self._topics.get(topic) is sub:
                await self.unsubscribe(topic)
            if isinstance(e, TimeoutError):
                raise BrokerError(
                    f"Redis at {self._where} did not confirm the subscription to {topic!r} "
                    f"(last error: {self._last_error})"
                ) from None
            raise
        if sub.last is None and self._topics.get(topic) is sub:
            sub.last = position

    async def unsubscribe(self, topic: str) -> None:
        sub = self._topics.pop(topic, None)
        if sub is None:
            return
        if not sub.ready.done():
            sub.ready.set_result(None)
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                await pubsub.unsubscribe(self._names.channel(topic))
            except Exception as e:  # the connection broke: the listener reconnects
                logger.debug("unsubscribe %r: %s (the listener reconnects)", topic, e)

    async def _send_subscribe(self, pubsub: PubSub, topics: list[str]) -> None:
        """SUBSCRIBE ``topics``; confirmations come back through the listener."""
        for topic in topics:
            self._inflight[topic] = self._inflight.get(topic, 0) + 1
        try:
            await pubsub.subscribe(*(self._names.channel(t) for t in topics))
        except Exception as e:  # the connection broke: the listener reconnects
            logger.debug("subscribe %s: %s (the listener reconnects)", topics[:3], e)

    # -- the connection ------------------------------------------------------------------
    async def run(self) -> None:
        """Supervise the pub/sub connection: connect, subscribe, listen; on failure, again."""
        pool = async_pool(
            self._redis_url,
            # No retries inside redis-py: a failure must surface here, to re-subscribe
            # and fill the gap from history.
            retry=AsyncRetry(NoBackoff(), 0, supported_errors=()),
            **{**self._pool_kwargs, "max_connections": 2},
        )
        client = aioredis.Redis(connection_pool=pool)
        failures = 0
        up_since: float | None = None
        try:
            while True:
                pubsub = client.pubsub()
                try:
                    await pubsub.subscribe(self._names.private_channel())
                    up_since = time.monotonic()
                    topics = self._up(pubsub)
                    if topics:
                        await self._send_subscribe(pubsub, topics)
                    await self._listen(pubsub)
                except Exception as e:
                    failures = self._failed(e, failures, up_since)
                    up_since = None
                finally:
                    self._pubsub = None
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                await asyncio.sleep(self._backoff.compute(failures))
        finally:
            self.connected = False
            await client.aclose(close_connection_pool=True)

    def _failed(self, error: Exception, failures: int, up_since: float | None) -> int:
        """The connection failed: log it (a warning at most every 30 s while down) and
        return the failures to back off by, from scratch after a connection that held."""
        held = up_since is not None and time.monotonic() - up_since > 10
        failures = 1 if held else failures + 1
        if self.connected or time.monotonic() - self._warned > 30:
            self._warned = time.monotonic()
            self._down(error, failures)
        else:
            logger.debug("Redis pub/sub: attempt %d failed: %s", failures, error)
        self._last_error = f"{type(error).__name__}: {error}"
        return failures

    def _up(self, pubsub: PubSub) -> list[str]:
        """Connected: return the topics to subscribe again (gaps are filled as they confirm)."""
        if self._reconnects or self._last_error is not None:
            logger.warning(
                "Redis pub/sub at %s: connected again after %.1fs; re-subscribing %d topic(s)",
                self._where, time.time() - self._changed, len(self._topics),
            )  # fmt: skip
        else:
            logger.info("Redis pub/sub at %s: connected", self._where)
        self.connected = True
        self._changed = time.time()
        self._inflight.clear()
        self._pubsub = pubsub
        topics = list(self._topics)
        for topic in topics:
            sub = self._topics[topic]
            sub.resync = sub.last is not None
        return topics

    def _down(self, error: BaseException, failures: int) -> None:
        if self.connected:
            self._reconnects += 1
            self._changed = time.time()
        self.connected = False
        if isinstance(error, (redis.RedisError, OSError, BrokerError)):
            logger.warning(
                "Redis pub/sub at %s: %s: %s; reconnecting (attempt %d)",
                self._where, type(error).__name__, error, failures,
            )  # fmt: skip
        else:
            logger.exception("Redis pub/sub at %s failed; reconnecting", self._where)

    async def _listen(self, pubsub: PubSub) -> None:
        """Read the connection until it fails; PING when it is quiet, give up when mute.

        With hiredis, the socket is read here, below redis-py's ``PubSub``: a read
        returns many messages at once (a batch of publishes arrives together), and
        each then costs its parsing and delivery only, not redis-py's per-message
        path (timeouts, retries, push handlers), which took half the listener's CPU.
        ``PubSub`` still writes SUBSCRIBE, UNSUBSCRIBE and PING on the connection.
        """
        stream = getattr(pubsub.connection, "_reader", None)
        if self.fast and hiredis is not None and isinstance(stream, asyncio.StreamReader):
            await self._read(pubsub, stream)
        pinged = False
        keepalive = self._options.keepalive
        while True:
            msg = await pubsub.get_message(timeout=keepalive)
            if msg is None:
                if pinged:
                    raise redis.ConnectionError(f"no reply to PING within {keepalive}s")
                pinged = True
                await pubsub.ping()
                continue
            pinged = False
            await self._dispatch(msg)

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        """Handle one of redis-py's pub/sub messages."""
        kind = msg["type"]
        if kind == "message":
            await self._on_message(msg["channel"], msg["data"])
        elif kind == "subscribe":
            await self._on_subscribed(msg["channel"])

    async def _read(self, pubsub: PubSub, stream: asyncio.StreamReader) -> None:
        assert hiredis is not None
        parser = hiredis.Reader(encoding="utf-8", errors="replace")
        gets, message = parser.gets, self._message
        keepalive = self._options.keepalive
        pinged = False
        while True:
            try:
                async with asyncio.timeout(keepalive):
                    data = await stream.read(1 << 16)
            except TimeoutError:
                if pinged:
                    raise redis.ConnectionError(f"no reply to PING within {keepalive}s") from None
                pinged = True
                await pubsub.ping()
                continue
            if not data:
                raise redis.ConnectionError("Connection closed by server.")
            pinged = False
            parser.feed(data)
            while (reply := gets()) is not False:
                if isinstance(reply, Exception):
                    raise redis.ResponseError(str(reply))
                kind = reply[0]
                if kind == "message":
                    gap = message(reply[1], reply[2])
                    if gap is not None:
                        await self._fill(*gap)
                elif kind == "subscribe":
                    await self._on_subscribed(reply[1])

    # -- messages ------------------------------------------------------------------------
    async def _on_subscribed(self, channel: str) -> None:
        topic = self._names.topic_of(channel)
        left = self._inflight.pop(topic, 1) - 1
        if left > 0:
            self._inflight[topic] = left
            return  # a later SUBSCRIBE of the same topic is still on its way
        sub = self._topics.get(topic)
        if sub is None:
            return
        if not sub.ready.done():
            sub.ready.set_result(None)
        if sub.resync and sub.last is not None:
            sub.resync = False
            await self._fill(topic, sub, sub.last, None)

    async def _on_message(self, channel: str, payload: str) -> None:
        gap = self._message(channel, payload)
        if gap is not None:
            await self._fill(*gap)

    def _message(self, channel: str, payload: str) -> Gap | None:
        """Deliver a live message, unless offsets were skipped: then return what to
        fill from history (a plain call, not a coroutine: most messages need no await)."""
        return self._parse(self._names.topic_of(channel), channel, payload)

    def _parse(self, topic: str, channel: str, payload: str) -> Gap | None:
        sub = self._topics.get(topic)
        if sub is None:
            return None
        try:
            head, _, rest = payload.partition("\n")
            epoch, offset, ms, event, flen = head.split(" ")
            n = int(flen)
            formats, data = (None, rest) if n < 0 else (rest[:n], rest[n:])
            position = Position(epoch, int(offset))
        except ValueError:
            logger.error("ignoring a message on %s that no tidings broker sent", channel)
            return None
        message = Message(topic, event, data, position, int(ms) / 1000, formats)
        gap = self._take(topic, sub, message)
        return None if gap is None else (topic, sub, gap, message)

    def _take(self, topic: str, sub: _Topic, message: Message) -> Position | None:
        """Deliver ``message`` if it is the next one; when offsets were skipped, return
        the position to fill from instead. Already delivered messages are dropped."""
        position, last = message.position, sub.last
        if last == EMPTY:  # the topic was empty: its first epoch starts
            last = sub.last = Position(position.epoch, 0)
        elif last is not None and position.epoch != last.epoch:
            logger.warning(
                "%r: new epoch %s after %s: its history was lost (Redis flushed, restarted "
                "empty, or idle past meta_ttl)", topic, position.epoch, last,
            )  # fmt: skip
            last = sub.last = Position(position.epoch, 0)
        if last is None or position.offset == last.offset + 1:
            sub.last = position
            deliver = self.deliver
            if deliver is not None:
                try:
                    deliver(message)
                except Exception:
                    logger.exception("delivering %r failed", message)
            return None
        if position.offset <= last.offset:
            return None
        return last

    async def _fill(
        self, topic: str, sub: _Topic, since: Position, trigger: Message | None
    ) -> None:
        """Deliver what came after ``since`` from history (after a reconnect or a skip)."""
        result = await self._history(topic, since)
        if self._topics.get(topic) is not sub:
            return
        if result.recovered:
            for message in result.messages:
                self._take(topic, sub, message)
            if result.messages:
                logger.info("%r: %d message(s) after %s delivered from history",
                            topic, len(result.messages), since)  # fmt: skip
            return
        logger.warning(
            "%r: messages after %s cannot be recovered (now at %s: epoch changed or history "
            "window exceeded); clients resuming with since get recovered=false",
            topic, since, result.position,
        )  # fmt: skip
        now = result.position  # behind what was seen, in its epoch: a failover lost some
        if now.epoch == since.epoch and now.offset < since.offset and self.went_back:
            await self.went_back(topic, since)
        sub.last = None
        if trigger is not None:
            self._take(topic, sub, trigger)
