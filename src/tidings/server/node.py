"""The per-process composition root: settings, broker, hub and presence tracker.

There is one :class:`Node` per process (:func:`get_node`). It starts its broker on the
event loop that first needs it (the server's), subscribes the broker to a topic when
the topic gets its first local subscriber and unsubscribes after the last, and tags
each message once as it arrives (its coalescing key, the feed that filters who sees
it). Its parts plug in without importing it back: a GRIP proxy is told of every
publish through :attr:`Node.published`, and the PostgreSQL listener runs as one of
its :attr:`Node.services`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from django.core.signals import setting_changed

from tidings import metrics, registry, tracing
from tidings.brokers import Broker, broker_from_url
from tidings.conf import Settings, get_settings
from tidings.core.messages import Message, Position
from tidings.core.protocol import (
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_MANY,
    CLOSE_TRY_AGAIN,
    Limits,
)
from tidings.core.rate import Bucket, Buckets, Verdict
from tidings.server import clients, services
from tidings.server.hub import Hub, Subscriber
from tidings.server.tracker import Tracker

logger = logging.getLogger("tidings.node")

# What a part is told of each publish: (topic, event, data_json, formats_json, position).
PublishHook = Callable[[str, str, str, "str | None", Position], None]


class GripPublisher(Protocol):
    """What the node asks of the proxies' publisher (:mod:`tidings.grip.publisher`)."""

    def publish(
        self, topic: str, event: str, data_json: str, formats_json: str | None, position: Position
    ) -> None: ...

    def disconnect(self, key: str, code: int, reason: str) -> None: ...


class Service(Protocol):
    """Something that runs as long as the node: started on its loop, stopped with it."""

    def start(self) -> None: ...
    async def stop(self) -> None: ...
    def health(self) -> dict[str, Any]: ...


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = Hub()
        self.broker: Broker = broker_from_url(settings.broker)
        self.tracker = Tracker(self)
        self.limits = Limits(  # one for every client of this process
            max_frame_bytes=settings.max_frame_bytes,
            max_subscriptions=settings.max_subscriptions,
            topic_max_length=settings.topic_max_length,
            rate=settings.rate,
            burst=settings.burst,
            max_depth=settings.max_depth,
        )
        self.published: list[PublishHook] = []
        self.services: dict[str, Service] = {}
        self.id = secrets.token_urlsafe(9)  # tells this process's cuts from others'
        self.clients = clients.Clients(self.id)  # every open subscriber, by user
        # HTTP publishes hold no connection to keep a bucket in: one per client address
        self.http_rate = Buckets(settings.rate, settings.burst, time.monotonic)
        self.shutting_down = False
        self.tracing = settings.tracing and tracing.enabled()  # OpenTelemetry (tidings.tracing)
        rate, burst = settings.connect_rate, settings.connect_burst
        self.admission = Bucket(rate, burst, time.monotonic) if rate > 0 else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_lock: asyncio.Lock | None = None
        self._ready: dict[str, asyncio.Future[None]] = {}
        if settings.grip:  # behind Pushpin: it holds connections, tell it of each publish
            from tidings.grip.publisher import Publisher

            self.grip: GripPublisher | None = Publisher(settings.grip)
            self.published.append(self.grip.publish)
        else:
            self.grip = None
        self.services.update(services.beside(self))
        if settings.metrics:
            metrics.attach(self)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop it serves on, once started."""
        return self._loop

    @property
    def presence_sync(self) -> float:
        return self.settings.presence_sync

    def lookup(self, topic: str) -> registry.TopicInfo:
        """Everything declared about ``topic`` (:func:`tidings.registry.lookup`)."""
        return registry.lookup(topic, self.settings)

    async def start(self) -> None:
        """Start the broker and the services on the running loop (idempotent)."""
        if self._loop is not None:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._loop is None:
                await self.broker.start(self._deliver)
                self._loop = asyncio.get_running_loop()
                for service in self.services.values():
                    service.start()
                try:  # cuts asked for by any process (tidings.disconnect)
                    await self.subscribe(clients.TOPIC, self.clients)
                except Exception as e:
                    logger.error("cannot hear other processes' disconnects: %s", e)

    async def stop(self) -> None:
        await self.tracker.close()
        for service in self.services.values():
            await service.stop()
        if self._loop is not None:
            self._loop = None
            self._start_lock = None  # it may start again, on another loop (tests do)
            await self.broker.close()

    def _deliver(self, message: Message) -> None:
        self.tag(message)
        if not self.tracing:
            return self.hub.dispatch(message)
        with tracing.delivering(message, self.hub.count(message.topic)):
            self.hub.dispatch(message)

    def tag(self, message: Message) -> None:
        """Tag a message once, as it arrives live or from history: its coalescing key,
        and the feed that filters who sees it."""
        info = registry.lookup(message.topic, self.settings)
        field = info.coalesce
        if field is not None:
            data = message.data
            if isinstance(data, dict) and isinstance(data.get(field), str | int):
                message.key = f"{message.topic}\0{data[field]}"
        feed = info.feed
        if feed is not None and feed.filters:
            message.audience = feed

    def health(self, ready: bool = False) -> dict[str, Any]:
        """``ok`` when the broker is connected (``ready``: and the server is not
        draining: a load balancer should send no one here)."""
        broker = self.broker.health()
        up = bool(broker.get("connected"))
        health: dict[str, Any] = {"ok": up and not (ready and self.shutting_down)}
        health["broker"] = broker
        for name, service in self.services.items():
            state = health[name] = service.health()
            health["ok"] = health["ok"] and bool(state.get("connected"))
        return health

    def refusal(self, user: Any, admitted: bool = True) -> tuple[int, str] | None:
        """Why a new connection of ``user`` is closed at once, if it is: the server is
        draining (1012); too many connections arrive at once (1013, ``CONNECT_RATE``,
        with a jittered hint: a storm is admitted at a bounded rate, and the refused
        come back spread out; ``admitted=False``: not counted there, as a long-poll,
        which is a request per poll); the user holds ``MAX_CONNECTIONS_PER_USER`` (4029)."""
        if self.shutting_down:
            return CLOSE_SERVICE_RESTART, "service restart"
        admission = self.admission if admitted else None
        if admission is not None and admission.take() is not Verdict.SERVE:
            spread = admission.burst / admission.rate
            return CLOSE_TRY_AGAIN, f"try again in {1 + random.random() * spread:.1f} s"
        limit = self.settings.max_connections_per_user
        if limit and self.clients.count(user) >= limit:
            return CLOSE_TOO_MANY, f"more than {limit} connections of this user"
        return None

    def begin_shutdown(self, then: Callable[[], None] | None = None) -> None:
        """The server is going down: not ready from now on (``/realtime/health?ready=1``
        says 503), and every client is closed with 1012, so it reconnects elsewhere.

        ``then`` (the server's own shutdown, on SIGTERM): the closes are spread over
        ``DRAIN_SECONDS`` in a random order, so the other servers take the clients back
        a few at a time, and ``then`` runs once they are all closed. Without it, or on
        a second signal, everyone is closed at once.
        """
        clients = list(self.clients)
        random.shuffle(clients)
        window = self.settings.drain_seconds if then is not None and not self.shutting_down else 0
        self.shutting_down = True
        step = window / len(clients) if clients and window > 0 else 0.0
        loop = asyncio.get_running_loop()
        for i, client in enumerate(clients):
            if step:
                loop.call_later(i * step, client.close, CLOSE_SERVICE_RESTART, "service restart")
            else:
                client.close(CLOSE_SERVICE_RESTART, "service restart")
        if then is not None:  # a moment for the last close frames to go out
            loop.call_later(max(0, len(clients) - 1) * step + 0.1, then)

    # -- ending a user's connections ---------------------------------------------------
    def disconnect(self, key: str, code: int, reason: str) -> None:
        """Close the connections of the user ``key`` in every process (sync: any thread).

        This process's are closed on its loop; the others hear of it on
        :data:`~tidings.server.clients.TOPIC`. A broker failure is logged, not raised:
        logging out must not fail because the broker is down.
        """
        if self.grip is not None:  # and those the proxy holds, told once, from here
            self.grip.disconnect(key, code, reason)
        if self._cut_here(key, code, reason):  # sync code on the node's loop: no blocking
            asyncio.get_running_loop().create_task(self._tell_others(key, code, reason))
            return
        try:
            self.publish(clients.TOPIC, clients.EVENT, clients.encode(key, code, reason, self.id))
        except Exception as e:
            logger.error("could not tell other processes to disconnect user %s: %s", key, e)

    async def adisconnect(self, key: str, code: int, reason: str) -> None:
        """Async twin of :meth:`disconnect`."""
        if self.grip is not None:
            self.grip.disconnect(key, code, reason)
        self._cut_here(key, code, reason)
        await self._tell_others(key, code, reason)

    def _cut_here(self, key: str, code: int, reason: str) -> bool:
        """Cut this process's connections of ``key`` on the node's loop; ``True`` when
        called on that loop (done now), else it is done there soon."""
        loop = self._loop
        if loop is None or asyncio._get_running_loop() is loop:
            self.clients.cut(key, code, reason)
            return loop is not None
        if not loop.is_closed():
            loop.call_soon_threadsafe(self.clients.cut, key, code, reason)
        return False

    async def _tell_others(self, key: str, code: int, reason: str) -> None:
        data = clients.encode(key, code, reason, self.id)
        try:
            await self.apublish(clients.TOPIC, clients.EVENT, data)
        except Exception as e:
            logger.error("could not tell other processes to disconnect user %s: %s", key, e)

    # -- local subscribers ---------------------------------------------------------------
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

    # -- publishing ----------------------------------------------------------------------
    def publish(
        self, topic: str, event: str, data_json: str, formats_json: str | None = None
    ) -> Position:
        history = registry.lookup(topic, self.settings).history
        started = time.perf_counter()
        if self.tracing:
            with tracing.publishing(topic, event, data_json, "server") as span:
                position = self.broker.publish(topic, event, data_json, history, formats_json)
                tracing.published(span, position)
        else:
            position = self.broker.publish(topic, event, data_json, history, formats_json)
        metrics.published("server", time.perf_counter() - started)
        for hook in self.published:
            hook(topic, event, data_json, formats_json, position)
        return position

    async def apublish(
        self,
        topic: str,
        event: str,
        data_json: str,
        formats_json: str | None = None,
        *,
        source: str = "server",
    ) -> Position:
        """``source``: who asked, for the metrics (``server`` code, or a ``client``)."""
        history = registry.lookup(topic, self.settings).history
        started = time.perf_counter()
        args = (topic, event, data_json, history, formats_json)
        if self.tracing:
            with tracing.publishing(topic, event, data_json, source) as span:
                position = await self.broker.apublish(*args)
                tracing.published(span, position)
        else:
            position = await self.broker.apublish(*args)
        metrics.published(source, time.perf_counter() - started)
        for hook in self.published:
            hook(topic, event, data_json, formats_json, position)
        return position


_node: Node | None = None
_node_lock = threading.Lock()
_lasting: list[PublishHook] = []  # hooks of every node this process builds


def watch_publishes(hook: PublishHook) -> Callable[[], None]:
    """Call ``hook`` on every publish made through this process's node, and through the
    nodes built after it (a settings change, a test's reset); return what stops it.
    :func:`tidings.testing.capture` records publishes with it."""
    _lasting.append(hook)
    node = _node
    if node is not None:
        node.published.append(hook)

    def stop() -> None:
        _lasting.remove(hook)
        node = _node
        if node is not None and hook in node.published:
            node.published.remove(hook)

    return stop


def get_node() -> Node:
    """This process's node, built from the settings on first use."""
    node = _node
    if node is None:
        node = _make()
    return node


def _make() -> Node:
    global _node
    with _node_lock:
        if _node is None:
            _node = Node(get_settings())
            _node.published.extend(_lasting)
        return _node


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    """``TIDINGS`` changed (tests' ``override_settings``): the next :func:`get_node` builds
    a node of the new settings; the old one is stopped on its loop, if it was started."""
    if setting == "TIDINGS":
        reset_node()


def reset_node() -> None:
    """Forget this process's node: the next :func:`get_node` builds one of the settings of
    the moment. The old one is stopped on its loop, if it was started there."""
    global _node
    with _node_lock:
        old, _node = _node, None
    loop = old._loop if old is not None else None
    if old is not None and loop is not None and not loop.is_closed():
        try:
            loop.call_soon_threadsafe(lambda: loop.create_task(old.stop()))
        except RuntimeError:
            logger.warning("could not stop the node of the previous TIDINGS settings")


setting_changed.connect(_settings_changed, dispatch_uid="tidings-node")
