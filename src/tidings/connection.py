"""The asyncio driver of one WebSocket connection: protocol session + hub + socket.

Two loops per connection. The *writer* (the ASGI task itself) drains a bounded
outbound queue of already-encoded frames into ``send``; the *reader* (one task) feeds
client frames to the sans-I/O :class:`~tidings.protocol.Session` and acts on what it
returns. The hub calls :meth:`Connection.deliver`, which only appends to the queue:
when the queue is full the connection is cut (close 4009) and dropped from the hub at
once, so it never holds up the publisher or anyone else.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from tidings import policy
from tidings.brokers.base import BrokerError
from tidings.handlers import Reject
from tidings.joins import Joins
from tidings.messages import Message
from tidings.node import Node
from tidings.outbox import Outbox
from tidings.protocol import (
    CLOSE_SLOW_CONSUMER,
    Close,
    Error,
    Limits,
    Ping,
    PresenceQuery,
    Publish,
    Request,
    RequestId,
    Session,
    Subscribe,
    Unsubscribe,
    error_frame,
    reply_frame,
)
from tidings.types import Receive, Send

logger = logging.getLogger("tidings.connection")


class Connection:
    def __init__(self, node: Node, user: Any, send: Send) -> None:
        settings = node.settings
        self.id = secrets.token_urlsafe(12)
        self.node = node
        self.user = user
        self.session = Session(
            Limits(
                max_frame_bytes=settings.max_frame_bytes,
                max_subscriptions=settings.max_subscriptions,
                topic_max_length=settings.topic_max_length,
                rate=settings.rate,
                burst=settings.burst,
            ),
            time.monotonic(),
        )
        self._send = send
        self._queue: Outbox[str] = Outbox(settings.queue_size)
        self._wakeup: asyncio.Future[None] | None = None
        self._close: Close | None = None
        self._done = False
        self._joins = Joins()

    def __repr__(self) -> str:
        return f"<Connection {self.id}>"

    # -- outbound ------------------------------------------------------------------
    def deliver(self, message: Message) -> None:
        """Queue a message of a subscribed topic (the hub calls this)."""
        if self._joins.busy() and not self._joins.admit(message):
            return
        self._push(message.ws_frame, message.key)

    def _push(self, frame: str, key: str | None = None) -> None:
        if self._close is not None:
            return
        if not self._queue.put(frame, key):
            self._overflow()
            return
        self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    def _overflow(self) -> None:
        logger.info("%r: more than %d frames waiting, closing", self, self._queue.limit)
        self.close(CLOSE_SLOW_CONSUMER, "slow consumer", drop=True)
        for topic in list(self.session.topics):
            self.node.unsubscribe_now(topic, self)

    def close(self, code: int, reason: str, *, drop: bool = False) -> None:
        """Send what is queued (or ``drop`` it), then a close frame; end the connection."""
        if self._close is None:
            self._close = Close(code, reason)
            if drop:
                self._queue.clear()
            self._wake()

    async def _write(self) -> None:
        queue, send = self._queue, self._send
        loop = asyncio.get_running_loop()
        while True:
            while (frame := queue.pop()) is not None:
                await send({"type": "websocket.send", "text": frame})
            if self._close is not None or self._done:
                break
            self._wakeup = loop.create_future()
            await self._wakeup
        if self._close is not None and not self._done:
            close = self._close
            await send({"type": "websocket.close", "code": close.code, "reason": close.reason})

    # -- the connection's life -----------------------------------------------------
    async def serve(self, receive: Receive) -> None:
        """Run until the client goes away or the connection is closed."""
        reader = asyncio.get_running_loop().create_task(self._read(receive))
        try:
            await self._write()
        except OSError:
            pass  # the client is gone (uvicorn raises ClientDisconnected, an OSError)
        finally:
            self._done = True
            if not reader.done():
                reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await self._cleanup()

    async def _read(self, receive: Receive) -> None:
        try:
            while self._close is None:
                event = await receive()
                kind = event["type"]
                if kind == "websocket.receive":
                    now = time.monotonic()
                    text = event.get("text")
                    if text is not None:
                        outcome = self.session.receive_text(text, now)
                    else:
                        outcome = self.session.receive_bytes(event.get("bytes") or b"", now)
                    if isinstance(outcome, Error):
                        self._push(outcome.frame())
                    elif isinstance(outcome, Close):
                        self.close(outcome.code, outcome.reason)
                    else:
                        await self._handle(outcome)
                elif kind == "websocket.disconnect":
                    break
        finally:
            self._done = self._done or self._close is None
            self._wake()

    async def _cleanup(self) -> None:
        for topic in list(self.session.topics):
            self.session.unsubscribed(topic)
            await self.node.unsubscribe(topic, self)
            await self.node.broker.presence_remove(topic, self.id)

    # -- requests --------------------------------------------------------------------
    async def _handle(self, request: Request) -> None:
        try:
            if isinstance(request, Publish):
                await self._publish(request)
            elif isinstance(request, Subscribe):
                await self._subscribe(request)
            elif isinstance(request, Unsubscribe):
                await self._unsubscribe(request)
            elif isinstance(request, PresenceQuery):
                members = await self.node.broker.presence(request.topic)
                self._reply(request.id, topic=request.topic, members=members)
            elif isinstance(request, Ping):
                self._reply(request.id)
        except BrokerError as e:
            logger.warning("%r: broker error on %r: %s", self, request, e)
            self._push(error_frame(request.id, "unavailable", "The message broker is unavailable."))
        except Exception:
            logger.exception("%r: error handling %r", self, request)
            self._push(error_frame(request.id, "internal_error", "Internal server error."))

    def _reply(self, rid: RequestId, **fields: Any) -> None:
        """Answer a request; a request without an id gets no answer when it succeeds."""
        if rid is not None:
            self._push(reply_frame(rid, **fields))

    async def _subscribe(self, request: Subscribe) -> None:
        topic = request.topic
        if topic in self.session.topics:
            result = await self.node.broker.history(topic, None)
            self._reply(request.id, topic=topic, position=str(result.position))
            return
        if not await policy.may(self.node, self.user, "subscribe", topic):
            self._push(error_frame(request.id, "forbidden", f"You may not subscribe to {topic!r}."))
            return
        self.session.subscribed(topic)
        try:
            result, messages = await self._joins.join(self.node, topic, self, request.since)
            if request.presence is not None:
                await self.node.broker.presence_add(topic, self.id, request.presence)
        except BaseException:
            self.session.unsubscribed(topic)
            self._joins.forget(topic)
            await self.node.unsubscribe(topic, self)
            raise
        fields: dict[str, Any] = {"topic": topic, "position": str(result.position)}
        if request.since is not None:
            fields["recovered"] = result.recovered
        self._reply(request.id, **fields)
        if messages and self._close is None:
            self._queue.replay([m.ws_frame for m in messages])
            self._wake()

    async def _unsubscribe(self, request: Unsubscribe) -> None:
        self.session.unsubscribed(request.topic)
        self._joins.forget(request.topic)
        await self.node.unsubscribe(request.topic, self)
        await self.node.broker.presence_remove(request.topic, self.id)
        self._reply(request.id, topic=request.topic)

    async def _publish(self, request: Publish) -> None:
        try:
            position = await policy.client_publish(
                self.node, self.user, request.topic, request.event, request.data, self.id
            )
        except policy.Forbidden as e:
            self._push(error_frame(request.id, "forbidden", str(e)))
        except Reject as e:
            self._push(error_frame(request.id, "rejected", e.message))
        else:
            self._reply(
                request.id,
                topic=request.topic,
                position=None if position is None else str(position),
            )
