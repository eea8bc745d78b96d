"""Holding requests open inside ordinary Django views, GRIP style.

One view can answer a plain GET, a stream, a long-poll and a WebSocket for the same
resource, as the headline API does:

    async def headline(request, pk):
        topic = f"headlines.{pk}"
        if tidings.is_websocket(request):
            return tidings.hold_websocket(request, topic)        # each update as a message
        if request.headers.get("Accept") == "text/event-stream":
            return tidings.hold_stream(request, topic)           # each update as an SSE event
        ...
        return await tidings.hold_longpoll(request, topic, since=etag, timeout=wait,
                                           timeout_response=HttpResponseNotModified())

What is sent for each published item comes from its formats (:mod:`tidings.formats`).
Holds do not check tidings' rules: the view that calls them is the gate, as for any
other response it returns. Without a proxy, tidings holds the request in this process;
behind Pushpin (``TIDINGS["GRIP"]``, :mod:`tidings.grip`) the same calls answer a request
that came through the proxy with GRIP instructions instead.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotModified,
    StreamingHttpResponse,
)

from tidings.core.messages import Message, Position
from tidings.core.protocol import Error, Output, Subscribe
from tidings.core.topics import topic_error
from tidings.formats import http_response, stream_chunk
from tidings.grip import holds as proxy
from tidings.grip.signature import is_ws_over_http, proxied
from tidings.server.clients import user_key
from tidings.server.node import Node, get_node
from tidings.server.outlets import Mailbox
from tidings.server.subscriber import Subscriber
from tidings.transports.http import error_response

logger = logging.getLogger("tidings.holds")


def _topics(topic: str | Sequence[str], node: Node) -> list[str]:
    topics = [topic] if isinstance(topic, str) else list(topic)
    for t in topics:
        problem = topic_error(t, node.settings.topic_max_length)
        if problem is not None:
            raise ValueError(f"{t!r}: {problem}")
    return topics


def parse_etag(value: str | None) -> Position | None:
    """The position in an ETag / If-None-Match value like ``"k3Xq9a:4"``; ``None`` if not one."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    try:
        return Position.parse(value.strip('"'))
    except ValueError:
        return None


def _proxied(request: HttpRequest, node: Node) -> bool:
    return bool(node.settings.grip) and proxied(request, node.settings)


def is_websocket(request: HttpRequest) -> bool:
    """Is this request a WebSocket handshake (that :func:`hold_websocket` can hold)?

    Behind Pushpin, a WebSocket-over-HTTP request from the proxy is one too.
    """
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return True
    return bool(get_node().settings.grip) and is_ws_over_http(request)


async def _user(request: HttpRequest) -> Any:
    """The request's user (``None`` without Django's auth middleware): the hold is that
    user's connection, so a logout or :func:`tidings.disconnect` ends it too."""
    auser = getattr(request, "auser", None)
    return None if auser is None else await auser()


def _known_user(request: HttpRequest) -> Any:
    """The request's user if the view has already resolved it (sync holds cannot query
    for it): through the proxy, a logout then ends the hold too."""
    return getattr(request, "_cached_user", None) or getattr(request, "_acached_user", None)


async def _join(
    node: Node, topics: list[str], since: Position | None, user: Any
) -> Subscriber | Error:
    """A subscriber of ``topics`` (after ``since`` on the first), joined, or the error
    (the broker is down). The view that holds the request is the gate: no rule is
    checked."""
    subscriber = Subscriber(node, user, Mailbox(), transport="hold")
    requests = [Subscribe(None, t, since if i == 0 else None, None) for i, t in enumerate(topics)]
    if await subscriber.run(subscriber.session.join_all(requests)):
        return subscriber
    await subscriber.leave()
    return next(item for item in subscriber.take() if isinstance(item, Error))


def _messages(items: list[Output]) -> list[Message]:
    return [item for item in items if type(item) is Message]


def hold_stream(
    request: HttpRequest,
    topic: str | Sequence[str],
    *,
    since: Position | str | None = None,
    content_type: str = "text/event-stream",
    keep_alive: str | None = ": keep-alive\n\n",
) -> HttpResponseBase:
    """Stream every item published to ``topic`` from now on (or after ``since``).

    Each item is written as its ``http_stream`` format, or else as an SSE event with
    its position as ``id``, so an ``EventSource`` that reconnects resumes by itself
    (``Last-Event-ID`` is used as ``since`` when none is given). ``keep_alive`` is
    written when nothing else was for ``TIDINGS["SSE_KEEPALIVE"]`` seconds. Behind
    Pushpin, the proxy holds the stream (:mod:`tidings.grip`).
    """
    node = get_node()
    topics = _topics(topic, node)
    start = since if isinstance(since, Position) else parse_etag(since)
    if start is None and since is None and len(topics) == 1:
        start = parse_etag(request.headers.get("Last-Event-ID"))
    if _proxied(request, node):
        key = user_key(_known_user(request))
        return proxy.stream_link(node.settings, topics, start, content_type, keep_alive, key)
    response = StreamingHttpResponse(
        _stream(request, node, topics, start, keep_alive), content_type=content_type
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _stream(
    request: HttpRequest,
    node: Node,
    topics: list[str],
    since: Position | None,
    keep_alive: str | None,
) -> AsyncIterator[str]:
    subscriber = await _join(node, topics, since, await _user(request))
    if isinstance(subscriber, Error):  # the headers are out: end the stream, say why
        logger.warning("could not hold a stream of %s: %s", topics, subscriber.message)
        return
    try:
        chunks = [stream_chunk(m) for m in _messages(subscriber.take())]
        if keep_alive:
            chunks.insert(0, keep_alive)  # headers out now, so the client knows it is connected
        if chunks:
            yield "".join(chunks)
        while subscriber.closing is None:
            if not await subscriber.wait(node.settings.sse_keepalive):
                if keep_alive:
                    yield keep_alive
                continue
            if subscriber.closing is not None:
                return
            messages = _messages(subscriber.take())
            if messages:
                yield "".join(stream_chunk(m) for m in messages)
    finally:
        await subscriber.leave()


async def hold_longpoll(
    request: HttpRequest,
    topic: str,
    *,
    timeout: float,
    since: Position | str | None = None,
    timeout_response: HttpResponse | None = None,
) -> HttpResponse:
    """Answer with the first item published to ``topic`` after ``since`` (default: now).

    If an item after ``since`` is already in history, it is answered at once; otherwise
    the request is held up to ``timeout`` seconds, then answered ``timeout_response``
    (default: 304 Not Modified). The answer is the item's ``http_response`` format (else
    its data as JSON), with the item's position as ``ETag``: send it back as ``since``
    (``If-None-Match``) to wait for the next one. A ``since`` that history cannot answer
    for (another epoch, too old) is treated as "now". Call it from an ``async`` view.
    While the broker is down the answer is the endpoints' 503 ``unavailable`` JSON
    with ``Retry-After`` (a stream held by :func:`hold_stream` ends at once).
    """
    node = get_node()
    (topic,) = _topics(topic, node)
    start = since if isinstance(since, Position) else parse_etag(since)
    if _proxied(request, node):
        key = user_key(await _user(request))
        return await proxy.longpoll(node, topic, start, timeout, timeout_response, key)
    subscriber = await _join(node, [topic], start, await _user(request))
    if isinstance(subscriber, Error):
        return error_response(subscriber)
    try:
        messages = _messages(subscriber.take())
        if not messages and await subscriber.wait(timeout) and subscriber.closing is None:
            messages = _messages(subscriber.take())
        if messages:
            return http_response(messages[0])
    finally:
        await subscriber.leave()
    return timeout_response if timeout_response is not None else HttpResponseNotModified()


class WebSocketHold(HttpResponse):
    """A view's answer to a WebSocket handshake: accept it and send it ``topics``' items."""

    def __init__(self, topics: list[str]) -> None:
        super().__init__(status=101)
        self.topics = topics


def hold_websocket(request: HttpRequest, topic: str | Sequence[str]) -> HttpResponse:
    """Accept this WebSocket and send it every item published to ``topic``.

    Each item is sent as its ``ws_message`` format, else as its data's JSON. What the
    client sends is read and ignored. Only for requests where :func:`is_websocket`.
    Behind Pushpin (WebSocket-over-HTTP) the answer accepts the socket and subscribes
    it to the topics' channels.
    """
    if not is_websocket(request):
        raise ValueError("hold_websocket() needs a WebSocket request (see is_websocket())")
    topics = _topics(topic, get_node())
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return WebSocketHold(topics)
    return proxy.websocket(request, topics, _known_user(request))
