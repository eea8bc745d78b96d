"""The Redis broker itself: publish, history, and running the scripts.

**Publish** is one Lua script (``lua/publish.lua``) per batch of publishes
(:mod:`~tidings.brokers.redis.batches`: publishes made at the same time go together;
:mod:`~tidings.brokers.redis.pipeline`: a loop's batches, several in flight):
for each message, take the next offset, append to the stream, trim it by count, PUBLISH
the message with its position inside. Redis runs a script alone, so offsets are
contiguous and every process sees a topic in offset order. The script is idempotent
(a random receipt id per batch), so it is retried after a broken connection without
publishing twice; and each message carries a deadline, so a publish stuck in a frozen
Redis or a dead socket is refused, not shown after its caller was told it failed.

**Epochs** live in ``meta`` and are made by a publish that finds none: after a
FLUSHALL, a restart without persistence or a long idle expiry, a topic gets a new
epoch and ``history(since=old)`` answers ``recovered=False``. A read never makes one: a
topic without ``meta`` stands at :data:`~tidings.core.messages.EMPTY` and no key is
written (``lua/history.lua``), so asking about any number of topics costs Redis nothing.

Delivery is the :class:`~tidings.brokers.redis.listener.PubSubListener`'s job, presence
the :class:`~tidings.brokers.redis.presence.RedisPresence`'s, health's PING the
:class:`~tidings.brokers.redis.probe.Probe`'s; the broker runs their tasks from start().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.retry import Retry

from tidings.brokers.base import Broker, Deliver, HistoryResult
from tidings.brokers.redis.batches import AsyncBatches, Pending, SyncBatches, settle
from tidings.brokers.redis.listener import PubSubListener
from tidings.brokers.redis.options import Names, Options, ms, new_id
from tidings.brokers.redis.packing import hiredis_packing
from tidings.brokers.redis.pipeline import AsyncPipeline, unreplicated
from tidings.brokers.redis.pools import async_pool, describe, is_sentinel, sync_pool, url_db
from tidings.brokers.redis.presence import RedisPresence
from tidings.brokers.redis.probe import Probe
from tidings.brokers.redis.scripts import SOURCES
from tidings.core.messages import HistoryPolicy, Message, Position
from tidings.exceptions import BrokerError

logger = logging.getLogger("tidings.brokers.redis")

WAIT_S = 1.0  # how long a publish waits for its replicas (WAIT, the URL's ``replicas``)
CLOSING = 5.0  # seconds close() waits for the broker's tasks to end
RETRY = (redis.ConnectionError, redis.TimeoutError)  # BusyLoadingError is a ConnectionError


class RedisBroker(Broker):
    presence: RedisPresence

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.options, self._redis_url = Options.split_url(url)
        opts = self.options
        parts = urlsplit(self._redis_url)
        self._db = url_db(self._redis_url)
        self.names = Names(opts.prefix, self._db)
        self._backoff = EqualJitterBackoff(cap=2.0, base=0.05)
        self._set_timeouts(dict(parse_qsl(parts.query)))
        sentinel = is_sentinel(self._redis_url)
        self._replicas = (1 if sentinel else 0) if opts.replicas < 0 else opts.replicas
        self._sync = redis.Redis(
            connection_pool=sync_pool(
                self._redis_url,
                retry=Retry(NoBackoff(), 0),  # retried here, within the deadline
                timeout=self._timeout,  # to wait for a free connection
                **self._pool_kwargs,
            )
        )
        self._publish_sync = self._sync.register_script(SOURCES["publish"])
        self._sync_batches = SyncBatches(self._send_sync)
        self._where = describe(self._redis_url, self._sync.connection_pool)
        # Asyncio state: bound to the loop that uses it (see _aio()).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._aio_client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._slots: asyncio.Semaphore | None = None
        self._pipeline: AsyncPipeline | None = None
        self._reads: AsyncBatches | None = None
        # The listener's and the presence store's tasks, owned by the broker's loop.
        self._tasks: list[asyncio.Task[None]] = []
        self._listener = PubSubListener(
            self._redis_url,
            self._pool_kwargs,
            self.names,
            opts,
            self._backoff,
            self.history,
            self._where,
        )
        self._listener.went_back = self._went_back
        self.presence = RedisPresence(self._call, self.names, opts, self._where)
        self._probe = Probe(self._redis_url, self._pool_kwargs, opts.health_interval)

    def _set_timeouts(self, given: dict[str, str]) -> None:
        """The pools' options from the URL's ``given`` ones, and what follows from them."""
        self._pool_kwargs: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": float(given.get("socket_timeout", 3.0)),
            "socket_connect_timeout": float(given.get("socket_connect_timeout", 3.0)),
            "max_connections": self.options.max_connections,
        }
        self._timeout = float(self._pool_kwargs["socket_timeout"])
        # A receipt outlives any attempt whose reply a publisher may still read.
        connect = float(self._pool_kwargs["socket_connect_timeout"])
        self._receipt_ms = ms(self.options.publish_timeout + connect + self._timeout + 2)

    # -- publishing -------------------------------------------------------------------
    def _pending(
        self, topic: str, event: str, data_json: str, history: HistoryPolicy, formats: str | None
    ) -> Pending:
        on = history.enabled
        return Pending(
            (self.names.key(topic, "meta"), self.names.key(topic, "history")),
            (
                self.names.channel(topic),
                event,
                data_json,
                formats or "",
                -1 if formats is None else len(formats),
                history.size if on else 0,
                ms(history.ttl) if on else 0,
                int((time.time() + self.options.publish_timeout) * 1000),
            ),
            len(data_json),
        )

    def _batch_args(self, batch: list[Pending]) -> tuple[list[str], list[Any]]:
        keys = [f"{self.names.prefix}:r:{secrets.token_hex(8)}"]
        args: list[Any] = [ms(self.options.meta_ttl), new_id(), self._receipt_ms]
        for pending in batch:
            keys += pending.keys
            args += pending.args
        return keys, args

    def publish(
        self,
        topic: str,
        event: str,
        data_json: str,
        history: HistoryPolicy,
        formats_json: str | None = None,
    ) -> Position:
        pending = self._sync_batches.publish(
            self._pending(topic, event, data_json, history, formats_json)
        )
        return self._published(topic, pending)

    def _send_sync(self, batch: list[Pending]) -> None:
        """Publish ``batch`` with the sync client; retry a broken connection within the
        deadline (the batch's receipt makes a second run return the first's answer)."""
        keys, args = self._batch_args(batch)
        give_up = time.monotonic() + self.options.publish_timeout
        failures = 0
        while True:
            try:
                settle(batch, self._run_sync(keys, args))
                return
            except RETRY:
                failures += 1
                pause = self._backoff.compute(failures)
                if failures > self.options.retries or time.monotonic() + pause > give_up:
                    raise
                time.sleep(pause)

    def _run_sync(self, keys: list[str], args: list[Any]) -> str:
        """The publish script, then (with ``replicas``) WAIT on the same connection."""
        if not self._replicas:
            return str(self._publish_sync(keys=keys, args=args))
        with self._sync.pipeline(transaction=False) as pipe:
            self._publish_sync(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", self._replicas, ms(WAIT_S))  # type: ignore[no-untyped-call]
            reply, acked = pipe.execute()
        if acked < self._replicas:
            raise BrokerError(unreplicated(acked, self._replicas, WAIT_S))
        return str(reply)

    async def apublish(
        self,
        topic: str,
        event: str,
        data_json: str,
        history: HistoryPolicy,
        formats_json: str | None = None,
    ) -> Position:
        pending = await self._submit(self._pending(topic, event, data_json, history, formats_json))
        return self._published(topic, pending)

    async def _submit(self, pending: Pending) -> Pending:
        """Publish ``pending`` with the loop's next batch; return it answered."""
        self._aio()
        assert self._pipeline is not None
        return await self._pipeline.submit(pending)

    async def _read(self, batch: list[Pending]) -> None:
        """Read a batch of histories: reads made at the same time (a reconnect storm's
        resumes) share one script call, as publishes do."""
        keys: list[str] = []
        args: list[Any] = [ms(self.options.meta_ttl)]
        for pending in batch:
            keys += pending.keys
            args += pending.args
        for pending, reply in zip(batch, await self._call("history", keys, args), strict=True):
            pending.reply = reply

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the scripts; retry a broken connection until ``publish_timeout``
        (every script may safely run twice), then raise what redis-py raised."""
        self._aio()
        assert self._slots is not None
        give_up = time.monotonic() + self.options.publish_timeout
        try:
            await asyncio.wait_for(self._slots.acquire(), self.options.publish_timeout)
        except TimeoutError:
            n = self.options.max_connections
            raise redis.ConnectionError(f"all {n} connections busy for too long") from None
        try:
            failures = 0
            while True:
                try:
                    return await self._scripts[script](keys=keys, args=args)
                except RETRY:
                    failures += 1
                    pause = self._backoff.compute(failures)
                    if failures > self.options.retries or time.monotonic() + pause > give_up:
                        raise
                    await asyncio.sleep(pause)
        finally:
            self._slots.release()

    def _unpublished(self, topic: str, error: BaseException) -> str:
        return (
            f"Could not publish to {topic!r} on Redis at {self._where}: {error}. It was not "
            "published, unless Redis took it just as the connection failed."
        )

    def _published(self, topic: str, pending: Pending) -> Position:
        error = pending.error
        if error is not None:
            if isinstance(error, (redis.RedisError, OSError, UnicodeError)):
                raise BrokerError(self._unpublished(topic, error)) from error
            raise error
        assert pending.reply is not None
        now, line = pending.reply
        if line != "late":
            epoch, _, offset = line.partition(" ")
            return Position(epoch, int(offset))
        skew = now / 1000 - time.time()
        raise BrokerError(
            f"Redis at {self._where} refused the publish to {topic!r}: it arrived after its "
            f"{self.options.publish_timeout}s deadline, so it was not published. "
            + (
                f"Redis's clock is {skew:+.1f}s from this machine's: synchronize them."
                if abs(skew) > 1
                else "Redis was slow or unreachable."
            )
        )

    # -- history ------------------------------------------------------------------------
    async def history(self, topic: str, since: Position | None) -> HistoryResult:
        self._aio()
        assert self._reads is not None
        read = await self._reads.submit(
            Pending(
                (self.names.key(topic, "meta"), self.names.key(topic, "history")),
                ("", 0) if since is None else (since.epoch, since.offset),
                0,
            )
        )
        if read.error is not None:
            if not isinstance(read.error, (redis.RedisError, OSError)):
                raise read.error
            where = f"Redis at {self._where}"
            e = read.error
            raise BrokerError(f"Could not read {topic!r}'s history from {where}: {e}") from e
        reply = read.reply
        position = Position(reply[0], int(reply[1]))
        if since is None:
            return HistoryResult(position, recovered=True)
        if not reply[2]:
            return HistoryResult(position, recovered=False)
        if len(reply) < 4:
            return HistoryResult(position, recovered=True)
        messages = tuple(self._entry(topic, entry, position.epoch) for entry in reversed(reply[3]))
        expected = range(since.offset + 1, position.offset + 1)
        if [m.position.offset for m in messages] != list(expected):
            logger.error("%r: history is not contiguous after %s; not replaying it", topic, since)
            return HistoryResult(position, recovered=False)
        return HistoryResult(position, recovered=True, messages=messages)

    async def _went_back(self, topic: str, seen: Position) -> None:
        """``topic`` stands before ``seen`` in ``seen``'s epoch: after a failover, the new
        master lacks messages that subscribers saw. Give it a new epoch (``lua/rollback.lua``)."""
        keys = [self.names.key(topic, "meta")]
        try:
            if await self._call("rollback", keys, [seen.epoch, seen.offset, new_id()]):
                logger.warning("%r: went back before %s (a failover): a new epoch", topic, seen)
        except (redis.RedisError, OSError) as e:
            logger.warning(
                "%r: went back before %s; could not change its epoch: %s", topic, seen, e
            )

    @staticmethod
    def _entry(topic: str, entry: list[Any], epoch: str) -> Message:
        entry_id, fields = entry
        f = dict(zip(fields[::2], fields[1::2], strict=True))
        ms = int(entry_id.partition("-")[0])
        return Message(topic, f["e"], f["d"], Position(epoch, int(f["o"])), ms / 1000, f.get("f"))

    # -- asyncio clients ------------------------------------------------------------------
    def _aio(self) -> aioredis.Redis:
        """The asyncio client of the running loop (made anew when the loop changes)."""
        loop = asyncio.get_running_loop()
        client = self._aio_client
        if client is None or self._loop is not loop:
            client = self._aio_client = aioredis.Redis(connection_pool=self._new_pool())
            self._loop = loop
            # Callers queue here in turn (FIFO), not in the pool, where some could starve.
            self._slots = asyncio.Semaphore(self.options.max_connections)
            self._scripts = {name: client.register_script(SOURCES[name]) for name in SOURCES}
            self._pipeline = AsyncPipeline(client.connection_pool, *self._pipeline_args())
            self._reads = AsyncBatches(self._read)
        return client

    def _new_pool(self) -> aioredis.ConnectionPool:
        url, kwargs = self._redis_url, self._pool_kwargs
        return hiredis_packing(async_pool(url, retry=AsyncRetry(NoBackoff(), 0), **kwargs))

    def _pipeline_args(self) -> tuple[Any, ...]:
        opts = self.options
        return (SOURCES["publish"], self._batch_args, settle, self._backoff, opts.retries,
                opts.publish_timeout, self._replicas)  # fmt: skip

    # -- running ------------------------------------------------------------------------
    async def start(self, deliver: Deliver) -> None:
        self._aio()
        self._listener.deliver = deliver
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._listener.run(), name="tidings-redis-pubsub"),
                loop.create_task(self.presence.refresh(), name="tidings-redis-presence"),
                loop.create_task(self._probe.run(), name="tidings-redis-probe"),
            ]
            for task in self._tasks:
                task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Both tasks run until close(): say so loudly if one ends any other way."""
        if task in self._tasks:
            self._listener.connected = False
            error = None if task.cancelled() else task.exception()
            logger.critical("%s ended (%r): this process no longer gets messages from Redis",
                            task.get_name(), error)  # fmt: skip

    async def _stop(self) -> None:
        """Cancel the listener's, presence's and probe's tasks; forget the topics."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):  # bounded: redis-py may swallow a cancel
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), CLOSING)
        self._listener.clear()

    async def close(self) -> None:
        await self._stop()
        client, self._aio_client = self._aio_client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            assert self._pipeline is not None
            await self._pipeline.close()
            await client.aclose(close_connection_pool=True)
        self._sync.connection_pool.disconnect()

    def health(self) -> dict[str, Any]:
        """``connected`` while the pub/sub connection is up and Redis answers PINGs
        (:mod:`~tidings.brokers.redis.probe`: a frozen Redis keeps its sockets open);
        how often the connection came back, the last errors."""
        health = {**self._listener.health(), **self._probe.health()}
        health["connected"] = health["connected"] and health["answering"]
        return health

    async def subscribe(self, topic: str) -> None:
        if not self._tasks:
            raise BrokerError("The Redis broker is not started: call start() first.")
        await self._listener.subscribe(topic)

    async def unsubscribe(self, topic: str) -> None:
        await self._listener.unsubscribe(topic)
