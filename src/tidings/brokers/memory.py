"""The in-process broker: history in ring buffers, presence in dicts. One process only.

Publishing is thread-safe: a lock orders appends, and deliveries from other threads
are handed off through one FIFO drained on the event loop that started the broker, so
subscribers see every topic in offset order whichever thread published.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import deque
from typing import Any

from tidings.brokers.base import Broker, Deliver, HistoryResult, PresenceStore
from tidings.core.messages import HistoryPolicy, Message, Position


def new_epoch() -> str:
    return secrets.token_hex(4)


class _Stream:
    """One topic's history: an epoch, the last offset, and the kept messages."""

    __slots__ = ("epoch", "kept", "offset")

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.kept: deque[Message] = deque()

    def trim(self, policy: HistoryPolicy, now: float) -> None:
        kept = self.kept
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


class MemoryBroker(Broker):
    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._policies: dict[str, HistoryPolicy] = {}
        self._handoff: deque[Message] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None
        self._drain_scheduled = False
        self.presence = MemoryPresence()

    async def start(self, deliver: Deliver) -> None:
        self._loop = asyncio.get_running_loop()
        self._deliver = deliver

    async def close(self) -> None:
        with self._lock:
            self._loop = None
            self._deliver = None
            self._handoff.clear()
            self._drain_scheduled = False

    async def subscribe(self, topic: str) -> None:
        """Nothing to do: every message of this process is already here."""

    async def unsubscribe(self, topic: str) -> None:
        """Nothing to do."""

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
            stream = self._streams.get(topic)
            if stream is None:
                stream = self._streams[topic] = _Stream()
            stream.offset += 1
            position = Position(stream.epoch, stream.offset)
            message = Message(topic, event, data_json, position, now, formats_json)
            if history.enabled:
                stream.kept.append(message)
                self._policies[topic] = history
            stream.trim(history, now)
            loop = self._loop
            if loop is None:
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
            if stream is None:
                stream = self._streams[topic] = _Stream()
            policy = self._policies.get(topic)
            if policy is not None:
                stream.trim(policy, time.time())
            position = Position(stream.epoch, stream.offset)
            if since is None:
                return HistoryResult(position, recovered=True)
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
