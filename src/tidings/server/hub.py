"""Per-process fan-out: topic -> the local subscribers of that topic.

The broker hands the hub each message once; the hub hands it to every local
subscriber by a plain synchronous call. No task, no JSON and no await per subscriber:
each subscriber only appends an already-encoded message to its own bounded queue (see
:class:`tidings.server.subscriber.Subscriber`), so a slow subscriber cannot stall the
others or the publisher.

The hub also notices a topic's history being lost under its live subscribers: a
message in another epoch than the topic's last one (the broker restarted empty, or was
flushed). Each subscriber hears of it first (:meth:`Subscriber.epoch_changed`) and
tells its client (a ``gap``, docs/protocol.md) unless it joined in that epoch already.

For the metrics (:mod:`tidings.metrics`) it counts deliveries once per message, not
per subscriber: each topic knows how many subscribers of each transport it has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from tidings.core.messages import Message

logger = logging.getLogger("tidings.hub")


class Subscriber(Protocol):
    def deliver(self, message: Message) -> None:
        """Take ``message``; must not block, must not raise, must not change the hub."""

    def epoch_changed(self, message: Message) -> None:
        """``message`` is the first of its topic in a new epoch (or the first the hub
        sees): called before :meth:`deliver`, under the same rules."""


class _Topic:
    __slots__ = ("epoch", "subscribers", "transports")

    def __init__(self) -> None:
        self.subscribers: dict[Subscriber, None] = {}
        self.epoch: str | None = None  # of its last message
        self.transports: dict[str, int] = {}  # how many subscribers of each transport

    def count(self, subscriber: Subscriber, n: int) -> None:
        transport = getattr(subscriber, "transport", None)
        if transport is not None:
            left = self.transports[transport] = self.transports.get(transport, 0) + n
            if not left:
                del self.transports[transport]


class Hub:
    def __init__(self) -> None:
        self._topics: dict[str, _Topic] = {}
        self.delivered: dict[str, int] = {}  # messages handed to subscribers, by transport
        # told each fanned-out message's publish time (tidings.metrics: the lag)
        self.dispatched: Callable[[float], None] | None = None

    def add(self, topic: str, subscriber: Subscriber) -> bool:
        """Add a subscriber; ``True`` when it is the topic's first one in this process."""
        entry = self._topics.get(topic)
        first = entry is None
        if entry is None:
            entry = self._topics[topic] = _Topic()
        elif subscriber in entry.subscribers:
            return False
        entry.subscribers[subscriber] = None
        entry.count(subscriber, 1)
        return first

    def remove(self, topic: str, subscriber: Subscriber) -> bool:
        """Remove a subscriber; ``True`` when it was the topic's last one."""
        entry = self._topics.get(topic)
        if entry is None or subscriber not in entry.subscribers:
            return False
        del entry.subscribers[subscriber]
        entry.count(subscriber, -1)
        if entry.subscribers:
            return False
        del self._topics[topic]
        return True

    def counts(self) -> dict[str, int]:
        """Every topic with local subscribers, and how many (for the admin panel)."""
        return {topic: len(entry.subscribers) for topic, entry in self._topics.items()}

    def has(self, topic: str) -> bool:
        return topic in self._topics

    def count(self, topic: str) -> int:
        entry = self._topics.get(topic)
        return 0 if entry is None else len(entry.subscribers)

    def dispatch(self, message: Message) -> None:
        """Hand ``message`` to every local subscriber of its topic."""
        entry = self._topics.get(message.topic)
        if entry is None:
            return
        if entry.epoch != message.position.epoch:  # history lost (or the topic's first)
            entry.epoch = message.position.epoch
            self._epoch_changed(entry, message)
        for subscriber in list(entry.subscribers):
            try:
                subscriber.deliver(message)
            except Exception:
                logger.exception("subscriber %r failed to take %r", subscriber, message)
        delivered = self.delivered
        for transport, n in entry.transports.items():
            delivered[transport] = delivered.get(transport, 0) + n
        if self.dispatched is not None:
            self.dispatched(message.timestamp)

    def _epoch_changed(self, entry: _Topic, message: Message) -> None:
        for subscriber in list(entry.subscribers):
            try:
                subscriber.epoch_changed(message)
            except Exception:
                logger.exception("subscriber %r failed to take %r", subscriber, message)
