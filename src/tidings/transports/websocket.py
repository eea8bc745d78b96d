"""The WebSocket transport: an ASGI app for ``/realtime/ws``.

Before accepting, it checks the ``Origin`` (a foreign, missing or ``null`` origin gets
HTTP 403 and no socket) and resolves the Django user from the session cookie. Then a
:class:`~tidings.connection.Connection` runs the protocol until either side closes.
"""

from __future__ import annotations

import logging

from tidings.auth import header, origin_allowed, user_from_headers
from tidings.connection import Connection
from tidings.node import get_node
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
