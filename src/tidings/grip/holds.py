"""Requests held in views, through the proxy: what :mod:`tidings.holds` answers there.

- A stream (:func:`tidings.hold_stream`) answers with a ``Grip-Link`` to tidings' own
  ``PATH/grip/stream`` (:func:`stream_next_view`), which Pushpin follows at once: that
  answer replays what came after ``Grip-Last`` (else ``since``), then holds the stream
  on the topics' channels with their positions as ``prev-id`` and a new next link.
- A long-poll (:func:`tidings.hold_longpoll`) is answered at once from history, or held
  with ``Grip-Hold: response``.
- A WebSocket (:func:`tidings.hold_websocket`) over WebSocket-over-HTTP is opened and
  subscribed to the topics' channels.

Each reads history through the same session as the in-process holds
(:class:`~tidings.grip.subscriber.ProxySubscriber`).
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotModified

from tidings.conf import Settings
from tidings.core.messages import Message, Position
from tidings.core.protocol import Error, Joined, Output, Subscribe
from tidings.formats import http_response, stream_chunk
from tidings.grip import ws_over_http
from tidings.grip.instructions import (
    channel,
    hold_response,
    hold_stream,
    sign,
    unsign,
    with_user,
)
from tidings.grip.signature import last_positions, proxied
from tidings.grip.subscriber import ProxySubscriber
from tidings.server.node import Node, get_node
from tidings.transports.http import error_response


async def read(node: Node, since: dict[str, Position | None], topics: list[str]) -> list[Output]:
    """Where each topic stands and what came after ``since`` there, as the session
    answers it (:class:`Joined`, replayed messages; an :class:`Error` if it failed)."""
    subscriber = ProxySubscriber(node, None, transport="grip hold")
    requests = [Subscribe(None, t, since.get(t), None) for t in topics]
    await subscriber.run(subscriber.session.join_all(requests))
    return subscriber.take()


def stream_link(
    settings: Settings,
    topics: list[str],
    since: Position | None,
    content_type: str,
    keep_alive: str | None,
    user: str | None = None,
) -> HttpResponse:
    """What :func:`tidings.hold_stream` answers through the proxy: a next link to
    ``PATH/grip/stream``, which Pushpin follows at once. ``user`` is the key of the
    hold's user (its streams then also listen on the user's channel)."""
    token = sign({"t": topics, "c": content_type, "k": keep_alive, "u": user})
    response = HttpResponse(b"", content_type=content_type)
    response["Cache-Control"] = "no-cache"
    response["Grip-Link"] = f"<{_stream_url(settings, token, since)}>; rel=next"
    return response


def _stream_url(settings: Settings, token: str, since: Position | None) -> str:
    query = {"h": token}
    if since is not None:
        query["since"] = str(since)
    return f"{settings.path}grip/stream?{urlencode(query)}"


async def stream_next_view(request: HttpRequest) -> HttpResponseBase:
    """``GET PATH/grip/stream``: a held stream's start, and its recovery.

    Only for the proxy (a valid ``Grip-Sig``) with a link tidings signed.
    """
    node = get_node()
    if not proxied(request, node.settings):
        return HttpResponse("Only the GRIP proxy may follow this link.\n", status=403)
    hold = unsign(request.GET.get("h", ""))
    if not isinstance(hold, dict) or not isinstance(hold.get("t"), list) or not hold["t"]:
        return HttpResponse("Bad link.\n", status=400)
    topics: list[str] = hold["t"]
    since: dict[str, Position | None] = {}
    if request.GET.get("since"):
        with contextlib.suppress(ValueError):
            since[topics[0]] = Position.parse(request.GET["since"])
    since.update(last_positions(request, {channel(t): t for t in topics}))
    items = await read(node, since, topics)
    failed = next((item for item in items if isinstance(item, Error)), None)
    if failed is not None:
        return error_response(failed)
    positions = {item.topic: item.position for item in items if isinstance(item, Joined)}
    chunks = [stream_chunk(item) for item in items if type(item) is Message]
    response = HttpResponse("".join(chunks), content_type=str(hold.get("c") or "text/event-stream"))
    keep_alive = hold.get("k")
    next_url = _stream_url(node.settings, request.GET["h"], positions[topics[0]])
    user = hold.get("u")
    return hold_stream(
        response,
        with_user(
            {channel(t): p for t, p in positions.items()}, user if isinstance(user, str) else None
        ),
        str(keep_alive) if keep_alive else None,
        node.settings.sse_keepalive,
        next_url,
    )


async def longpoll(
    node: Node,
    topic: str,
    since: Position | None,
    timeout: float,
    timeout_response: HttpResponse | None,
    user: str | None = None,
) -> HttpResponse:
    """:func:`tidings.hold_longpoll` through the proxy: the first item after ``since``
    from history, or a hold until the next one."""
    items = await read(node, {topic: since}, [topic])
    for item in items:
        if type(item) is Message:
            return http_response(item)
        if isinstance(item, Error):
            return error_response(item)
    position = next(item.position for item in items if isinstance(item, Joined))
    response = timeout_response if timeout_response is not None else HttpResponseNotModified()
    return hold_response(response, with_user({channel(topic): position}, user), timeout)


def websocket(request: HttpRequest, topics: list[str], user: Any) -> HttpResponse:
    """:func:`tidings.hold_websocket` over WebSocket-over-HTTP: open it and subscribe it
    to the topics' channels (Pushpin then sends it each item's ``ws-message``)."""
    try:
        received = ws_over_http.events(request)
    except ValueError:
        return HttpResponse("Bad WebSocket events.\n", status=400)
    opening = bool(received) and received[0].type == "OPEN"
    out: ws_over_http.Out = []
    if opening:
        out = [("TEXT", ws_over_http.control("subscribe", channel=channel(t))) for t in topics]
        out += ws_over_http.listen_as(user, received)
    return ws_over_http.answer(received, out)
