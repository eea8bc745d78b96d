"""Delivery on a Redis Cluster: sharded pub/sub over a fixed set of shard channels.

A topic's messages go to shard channel ``crc32(topic) % shards``
(:class:`~tidings.brokers.redis.slots.ShardNames`), so a process subscribes to
``shards`` channels (16 by default) once, with ``SSUBSCRIBE`` on the master that owns
each, over one connection per master: neither a connection per slot nor a subscription
per topic. A shard carries every topic that hashes to it, so a process also reads (and
drops) messages of topics it has no subscriber for: more shards, less of that.

A message is ``"<topic>\\n"`` followed by what a single Redis's channel carries
(:mod:`~tidings.brokers.redis.listener`). Any failure on any master's connection (a
killed master, a failover, a ``sunsubscribe`` Redis sends when a slot moves) closes them
all; the listener reads the slot map again, subscribes every shard again, and fills each
topic's gap from history, as the single-Redis listener does after a reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import redis
from redis.asyncio.client import PubSub
from redis.backoff import AbstractBackoff
from redis.crc import key_slot

from tidings.brokers.redis.listener import History, PubSubListener
from tidings.brokers.redis.options import Options
from tidings.brokers.redis.slots import Clients, ShardNames

logger = logging.getLogger("tidings.brokers.redis")


class ShardListener(PubSubListener):
    """:class:`PubSubListener` on shard channels; :meth:`run` supervises one sharded
    pub/sub connection per master (read through redis-py's ``PubSub``: the hiredis
    shortcut of the single-Redis listener reads one connection only)."""

    fast = False

    def __init__(
        self,
        hosts: list[tuple[str, int]],
        pool_kwargs: dict[str, Any],
        names: ShardNames,
        options: Options,
        backoff: AbstractBackoff,
        history: History,
        where: str,
    ) -> None:
        super().__init__("", pool_kwargs, names, options, backoff, history, where)
        self._hosts = hosts
        self._shards = names

    async def _send_subscribe(self, pubsub: PubSub, topics: list[str]) -> None:
        """Every shard channel is subscribed already: the topics are confirmed at once."""
        for topic in topics:
            sub = self._topics.get(topic)
            if sub is not None and not sub.ready.done():
                sub.ready.set_result(None)

    async def unsubscribe(self, topic: str) -> None:
        sub = self._topics.pop(topic, None)
        if sub is not None and not sub.ready.done():
            sub.ready.set_result(None)

    async def run(self) -> None:
        clients = Clients(self._hosts, {**self._pool_kwargs, "max_connections": 2})
        failures = 0
        up_since: float | None = None
        try:
            while True:
                _cancelled()
                pubsubs: list[PubSub] = []
                try:
                    await clients.ready()
                    if failures:
                        await clients.refresh()
                    by_node: dict[str, list[str]] = defaultdict(list)
                    for n in range(self._shards.shards):
                        channel = self._shards.shard_channel(n)
                        node = clients.primary(key_slot(channel.encode()))
                        if node.name not in by_node:
                            pubsubs.append(clients.client(node).pubsub())
                        by_node[node.name].append(channel)
                    for pubsub, channels in zip(pubsubs, by_node.values(), strict=True):
                        for channel in channels:  # one SSUBSCRIBE per slot
                            await pubsub.ssubscribe(channel)
                    for pubsub, channels in zip(pubsubs, by_node.values(), strict=True):
                        await self._confirmed(pubsub, len(channels))
                    up_since = time.monotonic()
                    topics = self._up(pubsubs[0])
                    await self._send_subscribe(pubsubs[0], topics)
                    await asyncio.gather(*(
                        self._fill(topic, sub, sub.last, None)
                        for topic, sub in list(self._topics.items())
                        if sub.resync and sub.last is not None
                    ))  # fmt: skip
                    for sub in self._topics.values():
                        sub.resync = False
                    _cancelled()
                    await self._listen_all(pubsubs)
                except Exception as e:
                    failures = self._failed(e, failures, up_since)
                    up_since = None
                finally:
                    self._pubsub = None
                    for pubsub in pubsubs:
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
                await asyncio.sleep(self._backoff.compute(failures))
        finally:
            self.connected = False
            await clients.close()

    async def _confirmed(self, pubsub: PubSub, n: int) -> None:
        """Until Redis confirms ``n`` SSUBSCRIBEs on ``pubsub``."""
        while n:
            msg = await pubsub.get_message(timeout=self._timeout)
            if msg is None:
                raise redis.ConnectionError("SSUBSCRIBE was not confirmed")
            n -= msg["type"] == "ssubscribe"

    async def _listen_all(self, pubsubs: list[PubSub]) -> None:
        """Read every master's connection until one fails; then stop them all."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._listen(p)) for p in pubsubs]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "smessage":
            topic, _, payload = msg["data"].partition("\n")
            gap = self._parse(topic, msg["channel"], payload)
            if gap is not None:
                await self._fill(*gap)
        elif kind == "sunsubscribe":
            raise redis.ConnectionError(f"{msg['channel']} moved to another master")


def _cancelled() -> None:
    """Raise if this task was cancelled: redis-py can swallow a ``CancelledError`` that
    arrives while it connects (seen when a broker is closed just after ``start``)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
