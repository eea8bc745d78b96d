"""The WebSocket transport: an ASGI app for ``/realtime/ws``.

Before accepting, it checks the ``Origin`` (a foreign, missing or ``null`` origin gets
HTTP 403 and no socket) and resolves the Django user from the session cookie. Then a
:class:`~tidings.connection.Connection` runs the protocol until either side closes.
"""

from __future__ import annotations

import asyncio
import io
import logging

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse, HttpResponseBase

from tidings.auth import header, origin_allowed, user_from_headers
from tidings.connection import Connection
from tidings.core.protocol import CLOSE_SLOW_CONSUMER
from tidings.formats import ws_text
from tidings.holds import WebSocketHold
from tidings.listener import Listener
from tidings.server.node import Node, get_node
from tidings.types import Receive, Scope, Send

logger = logging.getLogger("tidings.websocket")


async def websocket_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    node = get_node()
    headers = scope.get("headers", [])
    origin = header(headers, b"origin")
    if not origin_allowed(origin, header(headers, b"host"), node.settings.allowed_origins):
        logger.info("refused WebSocket from origin %r", origin)
        await send({"type": "websocket.close", "code": 1008})
        return
    user = await user_from_headers(headers)
    await node.start()
    await send({"type": "websocket.accept"})
    await Connection(node, user, send).serve(receive)


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
    headers = scope.get("headers", [])
    if not origin_allowed(
        header(headers, b"origin"), header(headers, b"host"), node.settings.allowed_origins
    ):
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
        await _serve_hold(node, response.topics, receive, send)
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


async def _serve_hold(node: Node, topics: list[str], receive: Receive, send: Send) -> None:
    """Send every item of ``topics`` until the client leaves; what it sends is ignored."""
    async with Listener(node, topics) as listener:
        await listener.join()
        reader = asyncio.get_running_loop().create_task(_until_disconnect(receive, listener))
        try:
            while not reader.done():
                await listener.wait(None)
                if reader.done():
                    return
                if listener.overflowed:
                    close = {"code": CLOSE_SLOW_CONSUMER, "reason": "slow consumer"}
                    await send({"type": "websocket.close", **close})
                    return
                for message in listener.take():
                    await send({"type": "websocket.send", "text": ws_text(message)})
        except OSError:
            pass  # the client is gone
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def _until_disconnect(receive: Receive, listener: Listener) -> None:
    while (await receive())["type"] != "websocket.disconnect":
        pass
    listener.stop()
