"""The subscriber of a request that came through the proxy: Pushpin holds its topics.

It drives the same session as every other transport; only listening differs: instead
of joining the hub, a topic's stream starting or stopping becomes a
:class:`~tidings.core.protocol.Listening` output, which the GRIP endpoint turns into
its instruction (a ``Grip-Channel``, a WebSocket-over-HTTP control message). Nothing
is left to clean up when the request ends: the proxy keeps the subscriptions.
"""

from __future__ import annotations

from typing import Any

from tidings.core.asks import Listen, Unlisten
from tidings.core.protocol import Listening
from tidings.core.session import Features
from tidings.server.node import Node
from tidings.server.outlets import Mailbox
from tidings.server.subscriber import Subscriber

# Presence needs a connection held here; model snapshots are not offered through the proxy.
PROXIED = Features(
    presence=False,
    snapshots=False,
    unavailable="Presence and model snapshots are not available through the proxy.",
)


class ProxySubscriber(Subscriber):
    __slots__ = ()

    def __init__(
        self,
        node: Node,
        user: Any,
        *,
        transport: str,
        features: Features = PROXIED,
        id: str | None = None,
    ) -> None:
        # nothing held here: for a shutdown to close, or for tidings.signals to tell
        super().__init__(
            node, user, Mailbox(), transport=transport, features=features, id=id, held=False
        )

    async def _listen(self, ask: Listen) -> None:
        self._put(Listening(ask.topic, True))

    async def _unlisten(self, ask: Unlisten) -> None:
        self._put(Listening(ask.topic, False))
