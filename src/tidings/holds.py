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

from collections.abc import AsyncIterator, Sequence

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotModified,
    StreamingHttpResponse,
)

from tidings import grip
from tidings.core.messages import Position
from tidings.core.topics import topic_error
from tidings.formats import http_response, stream_chunk
from tidings.listener import Listener
from tidings.server.node import Node, get_node


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


def is_websocket(request: HttpRequest) -> bool:
    """Is this request a WebSocket handshake (that :func:`hold_websocket` can hold)?

    Behind Pushpin, a WebSocket-over-HTTP request from the proxy is one too.
    """
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return True
    return get_node().settings.grip != () and grip.is_ws_over_http(request)


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
    if node.settings.grip and grip.proxied(request, node.settings):
        return grip.stream_link_response(node.settings, topics, start, content_type, keep_alive)
    response = StreamingHttpResponse(
        _stream(node, topics, start, keep_alive), content_type=content_type
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _stream(
    node: Node, topics: list[str], since: Position | None, keep_alive: str | None
) -> AsyncIterator[str]:
    async with Listener(node, topics) as listener:
        await listener.join({topics[0]: since} if since is not None else None)
        if keep_alive:
            yield keep_alive  # headers out now, so the client knows it is connected
        while True:
            if not await listener.wait(node.settings.sse_keepalive):
                if keep_alive:
                    yield keep_alive
                continue
            if listener.overflowed:
                return
            yield "".join(stream_chunk(m) for m in listener.take())


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
    """
    node = get_node()
    (topic,) = _topics(topic, node)
    start = since if isinstance(since, Position) else parse_etag(since)
    if node.settings.grip and grip.proxied(request, node.settings):
        result = await node.broker.history(topic, start)
        if start is not None and result.recovered and result.messages:
            return http_response(result.messages[0])
        response = timeout_response if timeout_response is not None else HttpResponseNotModified()
        return grip.hold_response(response, {grip.channel(topic): result.position}, timeout)
    async with Listener(node, [topic]) as listener:
        await listener.join({topic: start})
        if await listener.wait(timeout) and not listener.overflowed:
            first = listener.take_one()
            if first is not None:
                return http_response(first)
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
    try:
        events = grip.ws_events(request)
    except ValueError:
        return HttpResponse("Bad WebSocket events.\n", status=400)
    opening = bool(events) and events[0].type == "OPEN"
    out: list[tuple[str, bytes | None]] = []
    if opening:
        out = [("TEXT", grip.ws_control("subscribe", channel=grip.channel(t))) for t in topics]
    return grip.ws_answer(events, out)
