"""The per-process composition root: settings + broker + hub, started on first use.

There is one :class:`Node` per process (:func:`get_node`). It starts its broker on the
event loop that first needs it (the server's), subscribes the broker to a topic when
the topic gets its first local subscriber and unsubscribes after the last.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from time import monotonic
from typing import TYPE_CHECKING, Any

from tidings.brokers import Broker, broker_from_url
from tidings.conf import Settings, get_settings
from tidings.core.messages import Message, Position
from tidings.core.protocol import CLOSE_SERVICE_RESTART, Limits
from tidings.feeds import find_feed
from tidings.server.hub import Hub, Subscriber
from tidings.server.tracker import Tracker

if TYPE_CHECKING:
    from tidings.listener import Listener

# A message whose topic's previous fan-out ended less than this ago is part of a burst:
# its frames are queued and written in batches, not one by one (tidings.server.writer).
BURST_GAP = 0.005


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = Hub()
        self.broker: Broker = broker_from_url(settings.broker)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_lock: asyncio.Lock | None = None
        self._ready: dict[str, asyncio.Future[None]] = {}
        self.listeners: weakref.WeakSet[Listener] = weakref.WeakSet()  # open HTTP streams/polls
        self.shutting_down = False
        self.tracker = Tracker(self)
        self._tags: dict[str, tuple[str | None, Any]] = {}
        self.pg_listener: Any = None  # tidings.pgfeed.Listener when PG_LISTEN
        self._quiet: dict[str, float] = {}  # topic -> when its last fan-out ended
        self.limits = Limits(  # one for every connection of this process
            max_frame_bytes=settings.max_frame_bytes,
            max_subscriptions=settings.max_subscriptions,
            topic_max_length=settings.topic_max_length,
            rate=settings.rate,
            burst=settings.burst,
        )

    @property
    def started(self) -> bool:
        return self._loop is not None

    async def start(self) -> None:
        """Start the broker on the running loop (idempotent)."""
        if self._loop is not None:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._loop is None:
                await self.broker.start(self._deliver)
                self._loop = asyncio.get_running_loop()
                if self.settings.pg_listen:
                    from tidings.pgfeed import Listener

                    self.pg_listener = Listener()
                    self.pg_listener.start()

    def _deliver(self, message: Message) -> None:
        self.tag(message)
        topic = message.topic
        quiet = self._quiet
        message.eager = monotonic() - quiet.get(topic, 0.0) > BURST_GAP
        self.hub.dispatch(message)
        if len(quiet) > 10_000:
            quiet.clear()
        quiet[topic] = monotonic()  # when its last fan-out ended

    def tag(self, message: Message) -> None:
        """Tag a message once (its coalescing key, the feed that filters who sees it), as
        it arrives live or from history. Tags are looked up per topic."""
        topic = message.topic
        tags = self._tags.get(topic)
        if tags is None:
            if len(self._tags) > 10_000:
                self._tags.clear()
            feed = find_feed(topic)
            tags = self._tags[topic] = (
                self.settings.coalesce_field(topic),
                feed if feed is not None and feed.filters else None,
            )
        field, audience = tags
        if field is not None:
            data = message.data
            if isinstance(data, dict) and isinstance(data.get(field), str | int):
                message.key = f"{topic}\0{data[field]}"
        message.audience = audience

    def health(self) -> dict[str, Any]:
        """``ok`` when the broker is connected and the server is not shutting down."""
        broker = self.broker.health()
        ok = bool(broker.get("connected")) and not self.shutting_down
        health: dict[str, Any] = {"ok": ok, "broker": broker}
        listener = self.pg_listener
        if listener is not None:
            health["pg_listener"] = {
                "connected": listener.connected,
                "reconnects": listener.reconnects,
                "last_error": listener.last_error,
            }
            health["ok"] = ok and listener.connected
        return health

    def begin_shutdown(self) -> None:
        """The server is going down: end every stream and held poll now (1012), so their
        clients reconnect elsewhere instead of waiting for the grace period to run out."""
        self.shutting_down = True
        for listener in list(self.listeners):
            listener.stop(CLOSE_SERVICE_RESTART, "service restart")

    async def stop(self) -> None:
        await self.tracker.close()
        if self.pg_listener is not None:
            await self.pg_listener.stop()
        if self._loop is not None:
            self._loop = None
            await self.broker.close()

    async def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        """Add a local subscriber; the first one of a topic subscribes the broker."""
        await self.start()
        if self.hub.add(topic, subscriber):
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._ready[topic] = ready
            try:
                await self.broker.subscribe(topic)
            except BaseException as e:
                self.hub.remove(topic, subscriber)
                ready.set_exception(e)
                ready.exception()  # retrieved: the waiters re-raise it
                raise
            else:
                ready.set_result(None)
            finally:
                del self._ready[topic]
        else:
            pending = self._ready.get(topic)
            if pending is not None:
                await asyncio.shield(pending)

    async def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        if self.hub.remove(topic, subscriber):
            await self.broker.unsubscribe(topic)

    def unsubscribe_now(self, topic: str, subscriber: Subscriber) -> None:
        """Drop a local subscriber at once (sync); the broker is told soon after."""
        if self.hub.remove(topic, subscriber) and self._loop is not None:
            self._loop.create_task(self._release(topic))

    async def _release(self, topic: str) -> None:
        if not self.hub.has(topic):
            await self.broker.unsubscribe(topic)

    def publish(
        self, topic: str, event: str, data_json: str, formats_json: str | None = None
    ) -> Position:
        policy = self.settings.history_for(topic)
        position = self.broker.publish(topic, event, data_json, policy, formats_json)
        if self.settings.grip:  # behind Pushpin: it holds the connections, tell it too
            from tidings.grip import publish

            publish(self, topic, event, data_json, formats_json, position)
        return position

    async def apublish(
        self, topic: str, event: str, data_json: str, formats_json: str | None = None
    ) -> Position:
        policy = self.settings.history_for(topic)
        position = await self.broker.apublish(topic, event, data_json, policy, formats_json)
        if self.settings.grip:
            from tidings.grip import publish

            publish(self, topic, event, data_json, formats_json, position)
        return position


_node: Node | None = None
_node_lock = threading.Lock()


def get_node() -> Node:
    """This process's node, built from the current settings on first use."""
    global _node
    node = _node
    if node is None or node.settings is not get_settings():
        with _node_lock:
            if _node is None or _node.settings is not get_settings():
                _node = Node(get_settings())
            node = _node
    return node


def reset_node() -> None:
    """Forget this process's node (tests; after settings change)."""
    global _node
    with _node_lock:
        _node = None
