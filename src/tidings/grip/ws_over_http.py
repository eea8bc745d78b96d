"""The tidings protocol over WebSocket-over-HTTP: ``POST PATH/ws`` from Pushpin.

Each request carries a client's WebSocket events; the answer carries what the client
is sent, and ``subscribe``/``unsubscribe`` control messages for the topics' protocol
channels (Pushpin then sends the client each message's frame). Every frame goes to
the same session as on ``/realtime/ws`` (:class:`~tidings.grip.subscriber.ProxySubscriber`),
so the answers are the same. The subscribed topics live in the connection's
``Meta-Topics`` (set with ``Set-Meta-Topics``), trusted only on a verified request.
Presence and model snapshots are not available this way.

Views that hold WebSockets (:func:`tidings.hold_websocket`) answer such requests too;
:func:`events` and :func:`answer` encode them.
"""

from __future__ import annotations

import struct
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from tidings.core.frames import ws_text
from tidings.core.protocol import Listening, Output
from tidings.grip.instructions import gripcontrol, protocol_channel, user_channel
from tidings.grip.signature import WS_EVENTS, is_ws_over_http, meta
from tidings.grip.subscriber import ProxySubscriber
from tidings.handshake import origin_allowed
from tidings.server.clients import user_key
from tidings.server.node import get_node

Out = list[tuple[str, bytes | None]]  # (event type, content) to answer with


def events(request: HttpRequest) -> list[Any]:
    """The request's WebSocket events; ``ValueError`` when the body is not that format."""
    return list(gripcontrol().decode_websocket_events(request.body))


def control(kind: str, **fields: Any) -> bytes:
    return b"c:" + str(gripcontrol().websocket_control_message(kind, fields or None)).encode()


def answer(received: list[Any], out: Out) -> HttpResponse:
    """Encode ``out`` as the answer; ``OPEN`` first when opening.

    Pings are answered with pongs and a close with a close, as a WebSocket peer would.
    """
    gc = gripcontrol()
    opening = bool(received) and received[0].type == "OPEN"
    result = [gc.WebSocketEvent("OPEN")] if opening else []
    for e in received:
        if e.type == "PING":
            result.append(gc.WebSocketEvent("PONG", e.content or None))
        elif e.type == "CLOSE":
            code = e.content if e.content and len(e.content) == 2 else struct.pack(">H", 1000)
            out.append(("CLOSE", code))
    result.extend(gc.WebSocketEvent(kind, content) for kind, content in out)
    response = HttpResponse(gc.encode_websocket_events(result), content_type=WS_EVENTS)
    if opening:
        response["Sec-WebSocket-Extensions"] = "grip"
    return response


def listen_as(user: Any, received: list[Any]) -> Out:
    """On opening, a logged-in user's connection listens on the user's channel, where
    :func:`tidings.disconnect` publishes its close (:mod:`tidings.grip.publisher`)."""
    key = user_key(user)
    if key is None or not received or received[0].type != "OPEN":
        return []
    return [("TEXT", control("subscribe", channel=user_channel(key)))]


def _render(item: Output) -> tuple[str, bytes] | None:
    if isinstance(item, Listening):
        kind = "subscribe" if item.on else "unsubscribe"
        return "TEXT", control(kind, channel=protocol_channel(item.topic))
    text = ws_text(item)
    return None if text is None else ("TEXT", b"m:" + text.encode())


@csrf_exempt  # the proxy's POSTs carry no CSRF token; Grip-Sig and Origin are checked
async def ws_over_http_view(request: HttpRequest) -> HttpResponseBase:
    """``POST PATH/ws`` from Pushpin: see the module docstring."""
    node = get_node()
    if not node.settings.grip or not is_ws_over_http(request):
        return HttpResponse("WebSocket-over-HTTP requests come from the GRIP proxy.\n", status=403)
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.get_host(), node.settings.allowed_origins):
        return HttpResponse("Requests from this origin are not allowed.\n", status=403)
    try:
        received = events(request)
    except ValueError:
        return HttpResponse("Bad WebSocket events.\n", status=400)
    before = [t for t in (meta(request, "Topics") or "").split(",") if t]
    connection = "grip-" + (request.headers.get("Connection-Id") or "")[:64]
    user = await request.auser()
    subscriber = ProxySubscriber(node, user, transport="grip websocket", id=connection)
    session = subscriber.session
    session.restore(before)
    for event in received:
        if subscriber.closing is not None:
            break
        if event.type == "TEXT":
            text = (event.content or b"").decode("utf-8", "replace")
            await subscriber.receive(session.receive_text(text))
        elif event.type == "BINARY":
            await subscriber.receive(session.receive_bytes(event.content or b""))
    out: Out = [r for r in map(_render, subscriber.take()) if r is not None]
    out[:0] = listen_as(user, received)
    if subscriber.closing is not None:
        code, reason = subscriber.closing
        out.append(("CLOSE", struct.pack(">H", code) + reason.encode()))
    response = answer(received, out)
    after = sorted(session.topics)
    if after != sorted(before):
        response["Set-Meta-Topics"] = ",".join(after)
    return response
