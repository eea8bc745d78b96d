"""The asyncio driver of one WebSocket connection: protocol session + hub + socket.

The ASGI task reads: it feeds client frames to the sans-I/O
:class:`~tidings.core.protocol.Session` and acts on what it returns. Writing is the
:class:`~tidings.server.writer.Writer`'s: the hub calls :meth:`Connection.deliver`, which
writes the frame at once when the socket is idle and otherwise queues it, bounded; when
the queue is full the connection is cut (close 4009) and dropped from the hub at once,
so it never holds up the publisher or anyone else. An idle connection is one task.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from tidings import policy
from tidings.core.messages import Message
from tidings.core.presence import Entry
from tidings.core.protocol import (
    CLOSE_SLOW_CONSUMER,
    Close,
    Error,
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
from tidings.exceptions import BrokerError, Reject
from tidings.feeds import Row, SnapshotFilter, find_feed, snapshot_frame
from tidings.joins import Joins
from tidings.server.node import Node
from tidings.server.tracker import Tracked, find_tracked
from tidings.server.writer import Writer
from tidings.types import Receive, Send

logger = logging.getLogger("tidings.connection")


class Connection:
    __slots__ = ("_joins", "_presence", "id", "node", "session", "user", "writer")

    def __init__(self, node: Node, user: Any, send: Send) -> None:
        self.id = secrets.token_urlsafe(12)
        self.node = node
        self.user = user
        self.session = Session(node.limits, time.monotonic())
        self.writer = Writer(send, node.settings.queue_size, self._overflow)
        self._joins = Joins()
        # topics whose presence this connection watches -> its own entry when tracked
        self._presence: dict[str, Entry | None] = {}

    def __repr__(self) -> str:
        return f"<Connection {self.id}>"

    # -- outbound ------------------------------------------------------------------
    def deliver(self, message: Message) -> None:
        """Send (or queue) a message of a subscribed topic; the hub calls this."""
        if self._joins.busy() and not self._joins.admit(message):
            return
        audience = message.audience
        if audience is not None and not audience.visible(self.user, message.data.get("data")):
            return  # a model feed's row this user may not see
        self.writer.write(message.ws_frame, message.key, message.eager)

    def _push(self, frame: str) -> None:
        self.writer.write(frame)

    def presence_frame(self, topic: str, frame: str) -> None:
        """A presence state or diff of a watched topic (the tracker calls this)."""
        self.writer.write(frame)

    def _overflow(self) -> None:
        logger.info("%r: more than %d frames waiting, closing", self, self.writer.queue.limit)
        self.close(CLOSE_SLOW_CONSUMER, "slow consumer", drop=True)
        for topic in list(self.session.topics):
            self.node.unsubscribe_now(topic, self)

    def close(self, code: int, reason: str, *, drop: bool = False) -> None:
        """Send what is queued (or ``drop`` it), then a close frame."""
        self.writer.close(code, reason, drop=drop)

    # -- the connection's life -----------------------------------------------------
    async def serve(self, receive: Receive) -> None:
        """Read and answer the client's frames until it goes away.

        After a close frame was sent, what the client still sends is ignored until its
        close (or uvicorn's close timeout) ends the connection.
        """
        session, writer = self.session, self.writer
        try:
            while True:
                event = await receive()
                kind = event["type"]
                if kind == "websocket.disconnect":
                    break
                if kind != "websocket.receive" or writer.closing is not None:
                    continue
                now = time.monotonic()
                text = event.get("text")
                if text is not None:
                    outcome = session.receive_text(text, now)
                else:
                    outcome = session.receive_bytes(event.get("bytes") or b"", now)
                if isinstance(outcome, Error):
                    self._push(outcome.frame())
                elif isinstance(outcome, Close):
                    self.close(outcome.code, outcome.reason)
                else:
                    await self._handle(outcome)
        finally:
            writer.cancel()
            await self._cleanup()

    async def _cleanup(self) -> None:
        for topic in list(self.session.topics):
            self.session.unsubscribed(topic)
            await self.node.unsubscribe(topic, self)
            await self._leave_presence(topic)

    async def _leave_presence(self, topic: str) -> None:
        if topic not in self._presence:
            return
        entry = self._presence.pop(topic)
        if entry is not None:
            await self.node.tracker.leave(topic, self.id)
        await self.node.tracker.unwatch(topic, self)

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
                await self._presence_query(request)
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
        tracked = find_tracked(topic) if request.presence is not None else None
        if request.presence is not None and tracked is None:
            message = f"Presence is not enabled on {topic!r}."
            self._push(error_frame(request.id, "bad_request", message))
            return
        feed = find_feed(topic) if request.initial else None
        if request.initial and feed is None:
            self._push(error_frame(request.id, "bad_request", f"{topic!r} is not a model feed."))
            return
        rows: list[Row] = []

        async def snapshot() -> None:
            assert feed is not None
            rows.extend(await feed.asnapshot(self.user, topic))

        self.session.subscribed(topic)
        try:
            result, messages = await self._joins.join(
                self.node, topic, self, request.since, snapshot if feed is not None else None
            )
        except BaseException:
            self.session.unsubscribed(topic)
            self._joins.forget(topic)
            await self.node.unsubscribe(topic, self)
            raise
        fields: dict[str, Any] = {"topic": topic, "position": str(result.position)}
        if request.since is not None:
            fields["recovered"] = result.recovered
        self._reply(request.id, **fields)
        if feed is not None:
            self._push(snapshot_frame(topic, result.position, rows))
            shown = SnapshotFilter(rows)
            messages = [m for m in messages if shown.passes(m)]
            self._joins.guard(topic, shown)
        self.writer.replay(
            [
                m.ws_frame
                for m in messages
                if m.audience is None or m.audience.visible(self.user, m.data.get("data"))
            ]
        )
        if tracked is not None:
            await self._join_presence(topic, tracked, request.presence)

    async def _join_presence(self, topic: str, tracked: Tracked, presence: object) -> None:
        """Watch ``topic``'s presence; with a meta, track this connection too."""
        self._presence[topic] = None
        self._push(await self.node.tracker.watch(topic, self))
        if isinstance(presence, dict):
            member = await tracked.member_of(self.user, topic)
            if member is not None:
                entry = self._presence[topic] = Entry(member[0], member[1], presence)
                await self.node.tracker.join(topic, self.id, entry)

    async def _presence_query(self, request: PresenceQuery) -> None:
        topic, tracker = request.topic, self.node.tracker
        if request.meta is None:
            if find_tracked(topic) is None:
                message = f"Presence is not enabled on {topic!r}."
                self._push(error_frame(request.id, "bad_request", message))
                return
            self._reply(request.id, topic=topic, **await tracker.query(topic))
            return
        entry = self._presence.get(topic)
        if entry is None:
            message = (
                f"This connection is not tracked on {topic!r}: subscribe with a presence meta."
            )
            self._push(error_frame(request.id, "bad_request", message))
            return
        entry = self._presence[topic] = Entry(entry.key, entry.info, request.meta)
        await tracker.join(topic, self.id, entry)
        self._reply(request.id, topic=topic)

    async def _unsubscribe(self, request: Unsubscribe) -> None:
        self.session.unsubscribed(request.topic)
        self._joins.forget(request.topic)
        await self.node.unsubscribe(request.topic, self)
        await self._leave_presence(request.topic)
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
