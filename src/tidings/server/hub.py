"""Per-process fan-out: topic -> the local subscribers of that topic.

The broker hands the hub each message once; the hub hands it to every local
subscriber by a plain synchronous call. No task, no JSON and no await per subscriber:
each subscriber only appends an already-encoded frame to its own bounded queue (see
:class:`tidings.connection.Connection`), so a slow subscriber cannot stall the others
or the publisher.
"""

from __future__ import annotations

import logging
from typing import Protocol

from tidings.core.messages import Message

logger = logging.getLogger("tidings.hub")


class Subscriber(Protocol):
    def deliver(self, message: Message) -> None:
        """Take ``message``; must not block, must not raise, must not change the hub."""


class Hub:
    def __init__(self) -> None:
        self._topics: dict[str, dict[Subscriber, None]] = {}

    def add(self, topic: str, subscriber: Subscriber) -> bool:
        """Add a subscriber; ``True`` when it is the topic's first one in this process."""
        subscribers = self._topics.get(topic)
        if subscribers is None:
            self._topics[topic] = {subscriber: None}
            return True
        subscribers[subscriber] = None
        return False

    def remove(self, topic: str, subscriber: Subscriber) -> bool:
        """Remove a subscriber; ``True`` when it was the topic's last one."""
        subscribers = self._topics.get(topic)
        if subscribers is None or subscriber not in subscribers:
            return False
        del subscribers[subscriber]
        if subscribers:
            return False
        del self._topics[topic]
        return True

    def has(self, topic: str) -> bool:
        return topic in self._topics

    def count(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    def dispatch(self, message: Message) -> None:
        """Hand ``message`` to every local subscriber of its topic."""
        subscribers = self._topics.get(message.topic)
        if not subscribers:
            return
        for subscriber in list(subscribers):
            try:
                subscriber.deliver(message)
            except Exception:
                logger.exception("subscriber %r failed to take %r", subscriber, message)
