"""The Redis broker on a Redis Cluster: ``redis+cluster://host:port,host:port/``.

Each topic's keys share the hash tag ``{topic}`` (:class:`~tidings.brokers.redis.options.
Names`), so every script runs on the one master that owns the topic's slot; a batch of
publishes or history reads is split by slot, and each part runs there. The topology
(which master owns which slot) is redis-py's :class:`~redis.asyncio.cluster.RedisCluster`
``nodes_manager``; the scripts are sent on a plain connection to that master, because
two commands must go on the same connection:

1. ``EVALSHA publish`` (with no channel: the script does not publish), then
2. ``WAIT <replicas>``: the publish is answered only once a replica has it, so a master
   killed after answering loses nothing that was answered (its replica takes over with
   it). ``replicas=0`` in the URL skips this.

Then the broker itself ``SPUBLISH``es each message on its topic's shard channel
(:class:`ShardNames`: ``crc32(topic) % shards``), on whichever master owns that channel:
the shard channel and the topic are on different slots in general, and Redis does not
let a script publish outside its slot's node. Delivery is the
:class:`~tidings.brokers.redis.shards.ShardListener`'s job.

Unlike one Redis, two processes' publishes to one topic may reach a subscriber out of
offset order; the listener then reads the skipped offsets from history (so topics
without history can drop a message when publishers race: docs/redis.md). A MOVED reply,
a refused or broken connection or ``CLUSTERDOWN`` refreshes the slot map and retries,
within ``publish_timeout`` (every script may run twice: ``lua/publish.lua``'s receipt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

import redis
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import EqualJitterBackoff
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from tidings.brokers.base import Broker, Deliver
from tidings.brokers.redis.batches import AsyncBatches, Pending, SyncBatches, settle
from tidings.brokers.redis.broker import CLOSING, WAIT_S, RedisBroker
from tidings.brokers.redis.options import Options, ms
from tidings.brokers.redis.pipeline import unreplicated
from tidings.brokers.redis.presence import RedisPresence
from tidings.brokers.redis.probe import Probe
from tidings.brokers.redis.scripts import SOURCES
from tidings.brokers.redis.shards import ShardListener
from tidings.brokers.redis.slots import MOVED, Clients, ShardNames, startup_nodes
from tidings.core.messages import HistoryPolicy
from tidings.exceptions import BrokerError

logger = logging.getLogger("tidings.brokers.redis")

T = TypeVar("T")
Part = tuple[int, list[str], list[Any]]  # a script call: its slot, keys and arguments


class RedisClusterBroker(RedisBroker):
    """:class:`~tidings.brokers.redis.broker.RedisBroker` over a Redis Cluster (see the
    module docstring): the same keys, scripts, history and presence."""

    def __init__(self, url: str) -> None:
        Broker.__init__(self, url)
        self.options, rest = Options.split_url(url)
        opts = self.options
        if opts.shards < 1:
            raise ImproperlyConfigured(f"TIDINGS['BROKER'] = {url!r}: shards must be at least 1")
        self._hosts, given = startup_nodes(rest)
        self._db = 0
        self.names = self.shards = ShardNames(opts.prefix, opts.shards)
        self._backoff = EqualJitterBackoff(cap=2.0, base=0.05)
        self._set_timeouts(given)
        self._pool_kwargs.update({k: given[k] for k in ("username", "password") if k in given})
        self._where = "cluster " + ",".join(f"{h}:{p}" for h, p in self._hosts)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: Clients | None = None
        self._reads: AsyncBatches | None = None
        self._writes: AsyncBatches | None = None
        # Threads publish through a loop of the broker's own (started on first use).
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_clients: Clients | None = None
        self._thread_lock = threading.Lock()
        self._sync_batches = SyncBatches(self._send_sync)
        self._tasks: list[asyncio.Task[None]] = []
        self._listener = ShardListener(
            self._hosts, self._pool_kwargs, self.names, opts, self._backoff, self.history,
            self._where,
        )  # fmt: skip
        self._listener.went_back = self._went_back
        self.presence = RedisPresence(self._call, self.names, opts, self._where)
        self._probe: Probe = ClusterProbe(self._hosts, self._pool_kwargs, opts.health_interval)

    # -- the loop's clients -------------------------------------------------------------
    def _state(self) -> Clients:
        """The running loop's clients: the threads' loop keeps its own."""
        loop = asyncio.get_running_loop()
        if loop is self._thread_loop:
            if self._thread_clients is None:
                self._thread_clients = Clients(self._hosts, self._pool_kwargs)
            return self._thread_clients
        if self._clients is None or self._loop is not loop:
            self._clients = Clients(self._hosts, self._pool_kwargs)
            self._loop = loop
            self._reads = AsyncBatches(self._read)
            self._writes = AsyncBatches(self._write)
        return self._clients

    def _aio(self) -> Any:
        return self._state()

    async def _run(self, script: str, parts: list[Part], wait: int = 0) -> list[Any]:
        """Run ``script`` once per part, each on the master of its slot: one pipeline per
        master, then ``WAIT wait`` on the same connection. Follow MOVED and failovers
        until ``publish_timeout``. Returns each part's reply, or the exception it ended
        with."""
        state = self._state()
        results: list[Any] = [None] * len(parts)
        todo = list(range(len(parts)))
        give_up = time.monotonic() + self.options.publish_timeout
        failures = 0
        while True:
            retry: list[int] = []
            try:
                await state.ready()
                nodes: dict[str, list[int]] = defaultdict(list)
                for i in todo:
                    nodes[state.primary(parts[i][0]).name].append(i)
                outcomes = await asyncio.gather(*(
                    self._pipe(state, [parts[i] for i in idx], script, wait)
                    for idx in nodes.values()
                ), return_exceptions=True)  # fmt: skip
            except MOVED as e:
                outcomes, nodes = [e], {"": todo}
            for idx, out in zip(nodes.values(), outcomes, strict=True):
                replies = [out] * len(idx) if isinstance(out, BaseException) else out
                for i, reply in zip(idx, replies, strict=True):
                    results[i] = reply
                    if isinstance(reply, MOVED):
                        retry.append(i)
            failures += 1
            pause = self._backoff.compute(failures)
            if not retry or time.monotonic() + pause > give_up:
                return results
            logger.debug("Redis Cluster: %s; refreshing the slot map", results[retry[0]])
            todo = retry
            await asyncio.sleep(pause)
            await state.refresh()

    async def _pipe(self, state: Clients, parts: list[Part], script: str, wait: int) -> list[Any]:
        """One master's parts in one pipeline (then WAIT): each part's reply or error."""
        client = state.client(state.primary(parts[0][0]))
        need = min([wait] + [state.replicas(slot) for slot, _, _ in parts])
        sha = state.scripts[script].sha
        while True:
            async with client.pipeline(transaction=False) as pipe:
                for _, keys, args in parts:
                    pipe.evalsha(sha, len(keys), *keys, *args)
                if need:
                    pipe.execute_command("WAIT", need, ms(WAIT_S))
                replies = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in replies):
                break
            await client.script_load(SOURCES[script])
        if need:
            acked = replies.pop()
            if isinstance(acked, Exception):
                raise acked
            if acked < need:
                error = BrokerError(unreplicated(acked, need, WAIT_S))
                replies = [r if isinstance(r, Exception) else error for r in replies]
        return list(replies)

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        (reply,) = await self._run(script, [(key_slot(keys[0].encode()), keys, args)])
        if isinstance(reply, BaseException):
            raise reply
        return reply

    # -- publishing ---------------------------------------------------------------------
    def _pending(
        self, topic: str, event: str, data_json: str, history: HistoryPolicy, formats: str | None
    ) -> Pending:
        pending = super()._pending(topic, event, data_json, history, formats)
        pending.args = ("", *pending.args[1:])  # the script does not publish: we do
        return pending

    def _group_args(self, group: list[Pending]) -> tuple[list[str], list[Any]]:
        keys, args = self._batch_args(group)
        topic = self.shards.topic_of_key(group[0].keys[0])  # the receipt joins the slot
        keys[0] = f"{self.names.prefix}:{{{topic}}}:r:{secrets.token_hex(8)}"
        return keys, args

    async def _write(self, batch: list[Pending]) -> None:
        """Publish ``batch``: each slot's part on its master, then SPUBLISH what it took."""
        groups = list(by_slot(batch).values())
        parts: list[Part] = []
        for group in groups:
            keys, args = self._group_args(group)
            parts.append((key_slot(keys[1].encode()), keys, args))
        replicas = 1 if self.options.replicas < 0 else self.options.replicas
        published: list[Pending] = []
        for group, reply in zip(groups, await self._run("publish", parts, replicas), strict=True):
            try:
                if isinstance(reply, BaseException):
                    raise reply
                settle(group, reply)
                published += group
            except Exception as e:
                for pending in group:
                    pending.fail(e)
        if published:
            await self._spublish(published)

    async def _spublish(self, group: list[Pending]) -> None:
        """SPUBLISH each message of ``group`` on its shard channel, in order per master.
        A message that cannot be sent stays published (it is in history, positioned):
        subscribers get it from history at the next message or at their reconnect."""
        state = self._state()
        by_channel: dict[str, list[str]] = defaultdict(list)
        for pending in group:
            now, line = pending.reply
            if line == "late":
                continue
            topic = self.shards.topic_of_key(pending.keys[0])
            _, event, data, formats, flen, *_ = pending.args
            payload = f"{topic}\n{line} {now} {event} {flen}\n{formats}{data}"
            by_channel[self.shards.shard(topic)].append(payload)
        give_up = time.monotonic() + self.options.publish_timeout
        failures = 0
        while by_channel:
            try:
                await state.ready()
                nodes: dict[str, list[str]] = defaultdict(list)
                for channel in by_channel:
                    nodes[state.primary(key_slot(channel.encode())).name].append(channel)
                for out in await asyncio.gather(*(
                    self._spublish_on(state, channels, by_channel) for channels in nodes.values()
                ), return_exceptions=True):  # fmt: skip
                    if isinstance(out, BaseException):
                        raise out
            except MOVED as e:
                failures += 1
                pause = self._backoff.compute(failures)
                if time.monotonic() + pause > give_up:
                    logger.warning("Redis Cluster: could not SPUBLISH %d message(s): %s; they "
                                   "reach subscribers from history", len(group), e)  # fmt: skip
                    return
                await asyncio.sleep(pause)
                await state.refresh()

    @staticmethod
    async def _spublish_on(state: Clients, channels: list[str], left: dict[str, list[str]]) -> None:
        """One master's shard channels' messages in one pipeline; sent ones leave ``left``."""
        client = state.client(state.primary(key_slot(channels[0].encode())))
        async with client.pipeline(transaction=False) as pipe:
            for channel in channels:
                for payload in left[channel]:
                    pipe.execute_command("SPUBLISH", channel, payload)
            await pipe.execute()
        for channel in channels:
            del left[channel]

    async def _submit(self, pending: Pending) -> Pending:
        self._state()
        assert self._writes is not None
        return await self._writes.submit(pending)

    def _send_sync(self, batch: list[Pending]) -> None:
        """Threads' publishes run on a loop of the broker's own, in a daemon thread."""
        self._in_thread(self._write(batch))

    def _in_thread(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._thread_lock:
            if self._thread_loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="tidings-redis-cluster",
                                 daemon=True).start()  # fmt: skip
                self._thread_loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._thread_loop).result()

    async def _read(self, batch: list[Pending]) -> None:
        groups = list(by_slot(batch).values())
        parts: list[Part] = []
        for group in groups:
            keys: list[str] = []
            args: list[Any] = [ms(self.options.meta_ttl)]
            for pending in group:
                keys += pending.keys
                args += pending.args
            parts.append((key_slot(keys[0].encode()), keys, args))
        for group, replies in zip(groups, await self._run("history", parts), strict=True):
            if isinstance(replies, BaseException):
                for pending in group:
                    pending.fail(replies)
                continue
            for pending, reply in zip(group, replies, strict=True):
                pending.reply = reply

    # -- running ------------------------------------------------------------------------
    async def start(self, deliver: Deliver) -> None:
        await self._state().ready()
        await super().start(deliver)

    async def close(self) -> None:
        await self._stop()
        state, self._clients = self._clients, None
        # each wait bounded (CLOSING): a connection redis-py keeps from a cancel must not
        # hold the process's shutdown
        if state is not None and self._loop is asyncio.get_running_loop():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.close(), CLOSING)
        loop, self._thread_loop = self._thread_loop, None
        if loop is not None:
            thread_state, self._thread_clients = self._thread_clients, None
            if thread_state is not None:
                done = asyncio.run_coroutine_threadsafe(thread_state.close(), loop)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.wrap_future(done), CLOSING)
            loop.call_soon_threadsafe(loop.stop)


def by_slot(batch: list[Pending]) -> dict[int, list[Pending]]:
    """``batch`` split by the slot of each item's topic, each part in the batch's order."""
    groups: dict[int, list[Pending]] = defaultdict(list)
    for pending in batch:
        groups[key_slot(pending.keys[0].encode())].append(pending)
    return groups


class ClusterProbe(Probe):
    """PINGs every master: the cluster answers when all of them do."""

    def __init__(self, hosts: list[tuple[str, int]], pool_kwargs: dict[str, Any],
                 interval: float) -> None:  # fmt: skip
        super().__init__("", pool_kwargs, interval)
        self._hosts = hosts

    async def run(self) -> None:
        clients = Clients(self._hosts, self._pool_kwargs)
        try:
            while True:
                sent = time.monotonic()
                try:
                    await asyncio.wait_for(self._ping(clients), self.interval)
                except (redis.RedisError, OSError, TimeoutError) as e:
                    self.last_error = f"{type(e).__name__}: {e}"
                    await clients.refresh()
                else:
                    self.answered = time.monotonic()
                await asyncio.sleep(max(0.0, sent + self.interval - time.monotonic()))
        finally:
            await clients.close()

    @staticmethod
    async def _ping(clients: Clients) -> None:
        await clients.ready()
        primaries = clients.cluster.nodes_manager.get_nodes_by_server_type("primary")
        pings: list[Awaitable[Any]] = [clients.client(n).ping() for n in primaries]
        await asyncio.gather(*pings)
