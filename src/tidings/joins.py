"""Joining a topic with no gap and no duplicate: history after ``since``, then live.

A subscriber subscribes first and reads history second; messages delivered meanwhile
wait in ``pending``. After the read, a message can still arrive live that history
already had (a publish from another thread, or Redis pub/sub latency, races the read):
the subscriber's *floor* for the topic drops those, until the first newer message
shows that the live stream has caught up. Per topic, messages come in offset order,
so one comparison per message is all it takes, and only right after a join.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import monotonic
from typing import TYPE_CHECKING

from tidings.brokers import HistoryResult
from tidings.core.messages import Message, Position
from tidings.feeds import SnapshotFilter
from tidings.server.hub import Subscriber

if TYPE_CHECKING:
    from tidings.server.node import Node

GUARD_SECONDS = 10.0  # how long after a snapshot live changes are checked against it


class Joins:
    """One subscriber's join bookkeeping. Call :meth:`admit` from ``deliver`` while
    :meth:`busy`."""

    __slots__ = ("floors", "guards", "pending")

    def __init__(self) -> None:
        self.pending: dict[str, list[Message]] = {}
        self.floors: dict[str, Position] = {}
        # topic -> (until when, the filter of a snapshot): see guard()
        self.guards: dict[str, tuple[float, SnapshotFilter]] = {}

    def busy(self) -> bool:
        return bool(self.pending or self.floors or self.guards)

    def guard(self, topic: str, snapshot: SnapshotFilter) -> None:
        """After a model feed's snapshot, drop for a while the live changes it already
        shows: a change committed before the snapshot was read may still be published
        (after its commit) a moment after the subscription was complete."""
        self.guards[topic] = (monotonic() + GUARD_SECONDS, snapshot)

    def admit(self, message: Message) -> bool:
        """Should ``message`` go out now? (``False``: held for a join, or already sent.)"""
        topic = message.topic
        pending = self.pending.get(topic)
        if pending is not None:
            pending.append(message)
            return False
        floor = self.floors.get(topic)
        if floor is not None:
            p = message.position
            if p.epoch == floor.epoch and p.offset <= floor.offset:
                return False
            del self.floors[topic]
        guard = self.guards.get(topic)
        if guard is not None:
            until, snapshot = guard
            if monotonic() > until:
                del self.guards[topic]
            elif not snapshot.passes(message):
                return False
        return True

    def forget(self, topic: str) -> None:
        self.pending.pop(topic, None)
        self.floors.pop(topic, None)
        self.guards.pop(topic, None)

    async def join(
        self,
        node: Node,
        topic: str,
        subscriber: Subscriber,
        since: Position | None,
        snapshot: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[HistoryResult, list[Message]]:
        """Subscribe ``subscriber``; return the history result and what to send, in order.

        ``snapshot`` (a model feed's initial rows) is read after the position, while live
        messages are still held back, so nothing falls between it and what follows.
        """
        pending = self.pending[topic] = []
        try:
            await node.subscribe(topic, subscriber)
            try:
                result = await node.broker.history(topic, since)
                if snapshot is not None:
                    await snapshot()
            except BaseException:
                await node.unsubscribe(topic, subscriber)
                raise
        finally:
            del self.pending[topic]
        for message in result.messages:
            node.tag(message)
        now = result.position
        live = [
            m for m in pending if m.position.epoch != now.epoch or m.position.offset > now.offset
        ]
        messages = [*result.messages, *live]
        self.floors[topic] = messages[-1].position if messages else now
        return result, messages
