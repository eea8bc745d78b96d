"""The in-process broker: history in ring buffers, presence in dicts. One process only.

Publishing is thread-safe: a lock orders appends, and deliveries from other threads
are handed off through one FIFO drained on the event loop that started the broker, so
subscribers see every topic in offset order whichever thread published.

A topic's stream is made by its first publish, never by a read (a read of a topic it
does not keep answers :data:`~tidings.core.messages.EMPTY`). Streams are kept in the
order they were last touched (published, read, left by their last subscriber); a
sweep on the broker's loop frees, from the oldest, each one untouched for
``meta_ttl`` seconds (``memory://?meta_ttl=86400``, as the Redis broker's) that has
no subscriber and no history left. It costs one step per stream freed.

A publish in a process whose broker was never started (by the ASGI app's startup, or a
first connection) reaches no client: a management command, a shell, a task worker.
The first one logs a warning on ``tidings.brokers.memory`` that says to use Redis.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.core.exceptions import ImproperlyConfigured

from tidings.brokers.base import Broker, Deliver, HistoryResult, PresenceStore
from tidings.core.messages import EMPTY, HistoryPolicy, Message, Position

logger = logging.getLogger("tidings.brokers.memory")
_told = threading.Event()  # the warning of a publish that reaches no one was logged

UNSERVED = (
    "tidings: a publish to %r on the memory broker, in a process that serves no "
    "connections: no client hears it. memory:// (the default TIDINGS['BROKER']) reaches "
    "only the connections of its own process; to publish from a management command, a "
    "shell, a task worker or another server process, use Redis in every process: "
    "TIDINGS = {'BROKER': 'redis://127.0.0.1:6379/0'} (docs/redis.md, docs/deploy.md). "
    "Said once per process."
)


def new_epoch() -> str:
    return secrets.token_hex(4)


class _Stream:
    """One topic's history: an epoch, the last offset, the kept messages and the policy
    they are kept by, and when it was last touched (``time.monotonic()``)."""

    __slots__ = ("epoch", "kept", "offset", "policy", "touched")

    def __init__(self, now: float) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.kept: deque[Message] = deque()
        self.policy: HistoryPolicy | None = None
        self.touched = now

    def trim(self, now: float) -> None:
        kept, policy = self.kept, self.policy
        if policy is None:
            return
        while kept and (len(kept) > policy.size or now - kept[0].timestamp > policy.ttl):
            kept.popleft()


class MemoryPresence(PresenceStore):
    """Presence in dicts: it lives and dies with this one process, so an entry stays
    until it is removed (no TTL)."""

    def __init__(self) -> None:
        self._topics: dict[str, dict[str, dict[str, Any]]] = {}

    async def add(self, topic: str, conn_id: str, info: dict[str, Any]) -> None:
        self._topics.setdefault(topic, {})[conn_id] = info

    async def remove(self, topic: str, conn_id: str) -> None:
        entries = self._topics.get(topic)
        if entries is not None:
            entries.pop(conn_id, None)
            if not entries:
                del self._topics[topic]

    async def entries(self, topic: str) -> dict[str, dict[str, Any]]:
        return dict(self._topics.get(topic, {}))


def _meta_ttl(url: str) -> float:
    """``memory://?meta_ttl=<seconds>`` (default 86400, as the Redis broker's)."""
    value = dict(parse_qsl(urlsplit(url).query)).get("meta_ttl", "86400")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ImproperlyConfigured(f"TIDINGS['BROKER'] = {url!r}: meta_ttl must be > 0")
    return seconds


class MemoryBroker(Broker):
    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self.meta_ttl = _meta_ttl(url)
        self._lock = threading.Lock()
        self._streams: OrderedDict[str, _Stream] = OrderedDict()  # least recently touched first
        self._subscribed: set[str] = set()
        self._handoff: deque[Message] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None
        self._drain_scheduled = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._served = False  # it was started: this process serves connections
        self.presence = MemoryPresence()

    async def start(self, deliver: Deliver) -> None:
        self._served = True
        self._loop = asyncio.get_running_loop()
        self._deliver = deliver
        if self._sweeper is None:
            self._sweep()

    async def close(self) -> None:
        with self._lock:
            self._loop = None
            self._deliver = None
            self._handoff.clear()
            self._drain_scheduled = False
            sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()

    def health(self) -> dict[str, Any]:
        """Always connected; ``streams``: how many topics it keeps a stream for."""
        return {"connected": True, "streams": len(self._streams)}

    async def subscribe(self, topic: str) -> None:
        """Every message of this process is already here: only note that ``topic`` has
        a subscriber, so its stream is not freed."""
        self._subscribed.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        """``topic``'s stream may be freed ``meta_ttl`` from now."""
        self._subscribed.discard(topic)
        with self._lock:
            stream = self._streams.get(topic)
            if stream is not None:
                stream.touched = time.monotonic()
                self._streams.move_to_end(topic)

    def _sweep(self) -> None:
        """Free the idle streams (see the module doc), then run again later."""
        now, clock = time.monotonic(), time.time()
        with self._lock:
            streams = self._streams
            while streams:
                topic, stream = next(iter(streams.items()))
                if now - stream.touched < self.meta_ttl:
                    break
                stream.trim(clock)
                if stream.kept or topic in self._subscribed:
                    stream.touched = now  # still in use: look again in meta_ttl
                    streams.move_to_end(topic)
                else:
                    del streams[topic]
            loop = self._loop
            if loop is not None:
                self._sweeper = loop.call_later(min(self.meta_ttl / 2, 30.0), self._sweep)

    def publish(
        self,
        topic: str,
        event: str,
        data_json: str,
        history: HistoryPolicy,
        formats_json: str | None = None,
    ) -> Position:
        now = time.time()
        with self._lock:
            streams = self._streams
            stream = streams.get(topic)
            if stream is None:
                stream = streams[topic] = _Stream(time.monotonic())
            else:
                stream.touched = time.monotonic()
                streams.move_to_end(topic)
            stream.offset += 1
            position = Position(stream.epoch, stream.offset)
            message = Message(topic, event, data_json, position, now, formats_json)
            stream.policy = history
            if history.enabled:
                stream.kept.append(message)
            stream.trim(now)
            loop = self._loop
            if loop is None:
                if not self._served and not _told.is_set():
                    _told.set()
                    logger.warning(UNSERVED, topic)
                return position
            on_loop = asyncio._get_running_loop() is loop
            if on_loop and not self._handoff:
                direct = True  # nothing from other threads waits: deliver it here, now
            else:
                direct = False
                self._handoff.append(message)
                schedule = not self._drain_scheduled
                self._drain_scheduled = True
        deliver = self._deliver
        if direct:
            if deliver is not None:
                deliver(message)
        elif on_loop:
            self._drain()
        elif schedule:
            loop.call_soon_threadsafe(self._drain)
        return position

    async def apublish(
        self,
        topic: str,
        event: str,
        data_json: str,
        history: HistoryPolicy,
        formats_json: str | None = None,
    ) -> Position:
        return self.publish(topic, event, data_json, history, formats_json)

    def _drain(self) -> None:
        """Deliver what was handed off, in order; runs on the broker's loop only."""
        handoff = self._handoff
        while True:
            with self._lock:
                if not handoff:
                    self._drain_scheduled = False
                    return
                batch = list(handoff)
                handoff.clear()
            deliver = self._deliver
            if deliver is not None:
                for message in batch:
                    deliver(message)

    async def history(self, topic: str, since: Position | None) -> HistoryResult:
        with self._lock:
            stream = self._streams.get(topic)
            if stream is None:  # nothing kept: store nothing either
                return HistoryResult(EMPTY, recovered=since is None or since == EMPTY)
            stream.touched = time.monotonic()
            self._streams.move_to_end(topic)
            stream.trim(time.time())
            position = Position(stream.epoch, stream.offset)
            if since is None:
                return HistoryResult(position, recovered=True)
            if since == EMPTY:  # seen empty: this epoch was made since
                since = Position(stream.epoch, 0)
            if since.epoch != stream.epoch or since.offset > stream.offset:
                return HistoryResult(position, recovered=False)
            missed = stream.offset - since.offset
            if missed == 0:
                return HistoryResult(position, recovered=True)
            kept = stream.kept
            if len(kept) < missed:
                return HistoryResult(position, recovered=False)
            messages = tuple(kept[i] for i in range(len(kept) - missed, len(kept)))
            return HistoryResult(position, recovered=True, messages=messages)
