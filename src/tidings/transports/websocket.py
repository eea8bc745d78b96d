"""The WebSocket transport: ``/realtime/ws``, and WebSockets held by views.

Before accepting, it checks the ``Host`` against ``ALLOWED_HOSTS`` (DNS rebinding) and
the ``Origin`` (a foreign, missing or ``null`` origin): either refused gets HTTP 403
and no socket. Then it resolves the Django user from the session cookie. Then it
only moves bytes: each text frame goes to the client's
:class:`~tidings.server.subscriber.Subscriber` (whose session parses it and runs the
request), and the subscriber's queue goes to the socket through a
:class:`~tidings.server.writer.Writer`. An idle connection is one task.

A WebSocket on any other path is handed to the Django view its URL resolves to
(:func:`view_websocket`); a view that answers :func:`tidings.hold_websocket` gets a
subscriber too, whose messages are written in their ``ws_message`` format.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse, HttpResponseBase

from tidings.core.frames import ws_text
from tidings.core.messages import Message
from tidings.core.protocol import CLOSE_LOGGED_OUT, Output, Subscribe
from tidings.formats import ws_message
from tidings.handshake import allowed_host, header, origin_allowed, websocket_caller
from tidings.holds import WebSocketHold
from tidings.server.node import Node, get_node
from tidings.server.subscriber import Subscriber
from tidings.server.writer import Writer
from tidings.tokens import PROTOCOL, InvalidToken
from tidings.types import SEND_TEXT, Receive, Scope, Send

logger = logging.getLogger("tidings.websocket")


async def websocket_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    node = get_node()
    if not _handshake_ok(scope, node):
        await send({"type": "websocket.close", "code": 1008})
        return
    offered = list(scope.get("subprotocols") or [])
    accept: dict[str, Any] = {"type": "websocket.accept"}
    if PROTOCOL in offered:
        accept["subprotocol"] = PROTOCOL  # a browser fails a socket that picks none
    try:
        user, grant = await websocket_caller(scope)
    except InvalidToken as e:
        await send(accept)
        await send({"type": "websocket.close", "code": CLOSE_LOGGED_OUT, "reason": str(e)})
        return
    await node.start()
    await send(accept)
    writer = Writer(send, ws_text, frames=True, send_text=send_text_extension(scope))
    subscriber = Subscriber(node, user, writer, transport="websocket", grant=grant)
    session = subscriber.session
    idle = _IdleTimer(subscriber, node.settings.idle_timeout)
    code = None  # the client's close code
    try:
        while True:
            event = await receive()
            kind = event["type"]
            if kind == "websocket.disconnect":
                code = event.get("code")
                break
            if kind != "websocket.receive" or subscriber.closing is not None:
                continue  # after a close frame, what the client still sends is ignored
            text = event.get("text")
            if text is not None:
                await subscriber.receive(session.receive_text(text))
            else:
                await subscriber.receive(session.receive_bytes(event.get("bytes") or b""))
            idle.restart()
    finally:
        idle.cancel()
        writer.cancel()
        await subscriber.leave(code)


def send_text_extension(scope: Scope) -> Any:
    """``tidings.serve``'s synchronous text send, when the server offers it."""
    return (scope.get("extensions") or {}).get(SEND_TEXT)


CLOSE_IDLE = 4010


class _IdleTimer:
    """Close a connection that holds no subscription with 4010 once it has sent nothing
    for ``IDLE_TIMEOUT`` seconds: an open socket that subscribes to nothing only holds a
    file descriptor. A connection with a subscription has no timer at all.

    A frame only moves the deadline: the one timer, when it fires early, waits again for
    what is left. So a publisher that holds no topic (thousands of frames a second) does
    not make and cancel a timer per frame."""

    __slots__ = ("due", "handle", "loop", "subscriber", "timeout")

    def __init__(self, subscriber: Subscriber, timeout: float) -> None:
        self.subscriber = subscriber
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.handle: asyncio.TimerHandle | None = None
        self.due = 0.0  # (loop time) when it expires, unless a frame comes before
        self.restart()

    def restart(self) -> None:
        """After each frame: push the deadline back when no topic is held, else stop."""
        if self.timeout <= 0:
            return
        if self.subscriber.session.topics:
            self.cancel()
            return
        self.due = self.loop.time() + self.timeout
        if self.handle is None:
            self.handle = self.loop.call_at(self.due, self._expire)

    def _expire(self) -> None:
        self.handle = None
        if self.subscriber.session.topics:
            return
        if self.loop.time() < self.due:  # a frame came meanwhile: wait for the rest
            self.handle = self.loop.call_at(self.due, self._expire)
            return
        self.subscriber.close(CLOSE_IDLE, "idle: no subscription")

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def _handshake_ok(scope: Scope, node: Node) -> bool:
    """Is the ``Host`` one of ``ALLOWED_HOSTS``, and the ``Origin`` that host or allowed?"""
    headers = scope.get("headers", [])
    host = allowed_host(scope)
    if host is None:
        logger.info("refused WebSocket for host %r", header(headers, b"host"))
        return False
    origin = header(headers, b"origin")
    if origin_allowed(origin, host, node.settings.allowed_origins):
        return True
    logger.info("refused WebSocket from origin %r", origin)
    return False


async def view_websocket(handler: ASGIHandler, scope: Scope, receive: Receive, send: Send) -> None:
    """Hand a WebSocket on an ordinary URL to the Django view it resolves to.

    The handshake becomes a GET request that runs through the middleware (sessions,
    auth) to the view. A :class:`~tidings.holds.WebSocketHold` answer accepts the socket
    and sends it the hold's topics; any other answer refuses the handshake with that
    answer's status (403 where the server cannot send a status).
    """
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    node = get_node()
    if not _handshake_ok(scope, node):
        await send({"type": "websocket.close", "code": 1008})
        return
    http_scope = {
        **scope,
        "type": "http",
        "method": "GET",
        "scheme": "https" if scope.get("scheme") == "wss" else "http",
    }
    await signals.request_started.asend(sender=handler.__class__, scope=http_scope)
    request, response = handler.create_request(http_scope, io.BytesIO())
    try:
        if response is None:
            assert request is not None
            response = await handler.get_response_async(request)
        if not isinstance(response, WebSocketHold):
            await _refuse(scope, send, response)
            return
        await node.start()
        await send({"type": "websocket.accept"})
        auser = getattr(request, "auser", None)  # Django's auth middleware sets it
        user = None if auser is None else await auser()
        await _serve_hold(node, response.topics, user, receive, send)
    finally:
        await sync_to_async(
            response.close if response is not None else _noop, thread_sensitive=True
        )()


def _noop() -> None:
    pass


async def _refuse(scope: Scope, send: Send, response: HttpResponseBase) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": response.status_code,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1")) for k, v in response.items()
                ],
            }
        )
        body = response.content if isinstance(response, HttpResponse) else b""
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


def _hold_text(item: Output) -> str | None:
    """What a held WebSocket gets: each message in its ``ws_message`` format, nothing else."""
    return ws_message(item) if type(item) is Message else None


async def _serve_hold(
    node: Node, topics: list[str], user: Any, receive: Receive, send: Send
) -> None:
    """Send every item of ``topics`` until the client leaves; what it sends is ignored.
    The view that answered is the gate: no rule is checked here. The socket is
    ``user``'s connection: a logout or :func:`tidings.disconnect` ends it."""
    writer = Writer(send, _hold_text)
    subscriber = Subscriber(node, user, writer, transport="websocket hold")
    try:
        requests = [Subscribe(None, topic, None, None) for topic in topics]
        await subscriber.run(subscriber.session.join_all(requests))
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        writer.cancel()
        await subscriber.leave()
