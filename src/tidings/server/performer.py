"""What a subscriber's session asks, performed: rules, descriptions, history, snapshots,
presence queries and publishing (:mod:`tidings.core.asks`).

:class:`Performer` is the part of :class:`~tidings.server.subscriber.Subscriber` that
answers the session's asks other than listening (which the GRIP subscriber does its
own way); each is named in the subscriber's ``_PERFORM``.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from typing import Any

from tidings import registry
from tidings.core.asks import (
    Authorize,
    Describe,
    Facts,
    PublishData,
    QueryPresence,
    ReadHistory,
    ReadSnapshot,
)
from tidings.encoding import encode_data
from tidings.server.node import Node
from tidings.tokens import Grant


class Performer:
    """The asks a subscriber performs (a mixin: the subscriber holds the state)."""

    __slots__ = ()
    id: str
    node: Node
    user: Any
    _grant: Grant | None

    def _authorize(self, ask: Authorize) -> Coroutine[Any, Any, bool]:
        grant = self._grant
        if grant is not None and ask.action == "subscribe" and grant.allows(ask.topic):
            return _granted()  # the token's grant: no rule, no query
        info = registry.lookup(ask.topic, self.node.settings)
        return registry.may(self.user, ask.action, info, ask.topic)  # type: ignore[arg-type]

    async def _describe(self, ask: Describe) -> Facts:
        info = self.node.lookup(ask.topic)
        return Facts(presence=info.tracked is not None, feed=info.feed is not None)

    async def _history(self, ask: ReadHistory) -> Any:
        result = await self.node.broker.history(ask.topic, ask.since)
        for message in result.messages:
            self.node.tag(message)
        return result

    async def _snapshot(self, ask: ReadSnapshot) -> Any:
        feed = self.node.lookup(ask.topic).feed
        assert feed is not None
        rows = await feed.asnapshot(self.user, ask.topic)
        return json.loads(encode_data(rows))  # plain JSON values from here on

    async def _query_presence(self, ask: QueryPresence) -> dict[str, Any]:
        return await self.node.tracker.query(ask.topic)

    async def _publish(self, ask: PublishData) -> Any:
        topic, data = ask.topic, ask.data
        handler = registry.lookup(topic, self.node.settings).handler
        if handler is not None:
            message = registry.ClientMessage(self.user, topic, ask.event, data, self.id)
            data = await registry.run_handler(handler, message)
            if data is None:
                return None  # the handler chose to broadcast nothing
        return await self.node.apublish(topic, ask.event, encode_data(data), source="client")


async def _granted() -> bool:
    return True
