"""Server-Sent Events: ``GET /realtime/sse?topic=a&topic=b``.

Each event is ``id: <cursor>`` (every topic's position, see :mod:`tidings.transports.http`),
``event: <event name>``, ``data: <JSON>``. The stream starts with ``retry:`` and an
``event: tidings.open`` whose data says, per topic, where it stands and whether the
resume from ``Last-Event-ID`` (or ``?since=``) was ``recovered``. A comment line keeps
idle streams alive through proxies; a ``tidings.close`` event ends a stream the server
closes (slow consumer, restart). The view is async and the stream an async generator:
an idle client costs no thread, and when the client goes away Django cancels the
generator, which unsubscribes at once.

Behind Pushpin (GRIP), the proxy holds the stream: the answer is the same start and
replay, with ``Grip-Hold: stream`` on the topics' protocol channels and a next link
carrying the cursor, which Pushpin follows on each publish (a hint) or gap.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import urlencode

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)

from tidings.core.frames import close_event, gap_frame, joined_info
from tidings.core.messages import Message, Position
from tidings.core.protocol import (
    Error,
    Gap,
    Joined,
    Output,
    PresenceFrame,
    Subscribe,
)
from tidings.core.streams import cursor, parse_cursor
from tidings.grip.instructions import hold_stream, protocol_channel, sign, unsign, with_user
from tidings.grip.signature import proxied
from tidings.grip.subscriber import ProxySubscriber
from tidings.server.clients import user_key
from tidings.server.node import Node, get_node
from tidings.server.subscriber import Subscriber
from tidings.transports.http import (
    StreamRequest,
    error_response,
    first_error,
    opened,
    stream_request,
)

KEEPALIVE = ": keep-alive\n\n"


async def sse_view(request: HttpRequest) -> HttpResponseBase:
    node = get_node()
    behind_proxy = bool(node.settings.grip) and proxied(request, node.settings)
    if behind_proxy and request.GET.get("link") is not None:  # Pushpin following a next link
        return await _next_link(request, node)
    resume = request.headers.get("Last-Event-ID") or request.GET.get("since")
    req = await stream_request(request, node, "sse", resume, proxied=behind_proxy)
    if not isinstance(req, StreamRequest):
        return req
    if req.by_proxy:
        key = user_key(req.subscriber.user)
        return await _held_by_proxy(node, req.topics, req.requests, req.subscriber, key, first=True)
    # Join before answering, so a join that fails (the broker is down) is an HTTP error,
    # not a 200 and a stream that ends at once. The stream is started here: if the client
    # goes away before it is sent, its generator is closed and leaves the topics.
    chunks = stream(node, req)
    opening = await anext(chunks)
    if isinstance(opening, Error):
        await chunks.aclose()
        return error_response(opening)
    response = StreamingHttpResponse(_after(opening, chunks), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


class _Events:
    """Renders a subscriber's outputs as SSE events, keeping the cursor."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics
        self.positions: dict[str, Position] = {}

    def start(self, items: list[Output], retry_ms: int | None) -> str:
        """The stream's start (``tidings.open``); the cursor starts where each topic's
        stream continues."""
        joined = opened(items)
        self.positions = {t: joined[t].start for t in self.topics}
        data = json.dumps(
            {"topics": {t: joined_info(joined[t]) for t in self.topics}}, separators=(",", ":")
        )
        retry = "" if retry_ms is None else f"retry: {retry_ms}\n"
        return f"{retry}id: {self.cursor()}\nevent: tidings.open\ndata: {data}\n\n"

    def cursor(self) -> str:
        return cursor(self.positions, self.topics)

    def render(self, items: list[Output]) -> str:
        single = len(self.topics) == 1
        chunks = []
        for item in items:
            if type(item) is Message:
                self.positions[item.topic] = item.position
                at = item.position if single else self.cursor()
                chunks.append(f"id: {at}\n{item.sse_body}")
            elif isinstance(item, PresenceFrame):
                chunks.append(presence_event(item.text))
            elif isinstance(item, Gap):  # the id moves: a resume continues from there
                self.positions[item.topic] = item.position
                at = item.position if single else self.cursor()
                chunks.append(f"id: {at}\nevent: tidings.gap\ndata: {gap_frame(item)}\n\n")
        return "".join(chunks)


def presence_event(frame: str) -> str:
    """A presence frame as an SSE event (no ``id``: presence has no position)."""
    diff = frame.startswith('{"op":"presence_diff"')
    return f"event: {'tidings.presence_diff' if diff else 'tidings.presence'}\ndata: {frame}\n\n"


async def _after(first: str, chunks: AsyncGenerator[str | Error, None]) -> AsyncIterator[str]:
    yield first
    async for chunk in chunks:
        assert isinstance(chunk, str)
        yield chunk


async def stream(node: Node, req: StreamRequest) -> AsyncGenerator[str | Error, None]:
    """Join, then the stream's chunks; the first item is the :class:`Error` the join
    failed with instead, if it failed (:func:`sse_view` answers it as HTTP)."""
    subscriber, settings = req.subscriber, node.settings
    try:
        joined = await subscriber.run(subscriber.session.join_all(req.requests))
        items = subscriber.take()
        if not joined:
            failed = first_error(items)
            yield failed if failed is not None else Error(None, "internal_error", "error")
            return
        events = _Events(req.topics)
        yield events.start(items, settings.sse_retry_ms) + events.render(items)
        while True:
            if not await subscriber.wait(settings.sse_keepalive):
                yield KEEPALIVE
                continue
            chunk = events.render(subscriber.take())
            if subscriber.closing is not None:
                yield chunk + close_event(*subscriber.closing)
                return
            if chunk:
                yield chunk
    finally:
        await subscriber.leave()


# -- behind Pushpin ----------------------------------------------------------------------
async def _held_by_proxy(
    node: Node,
    topics: list[str],
    requests: list[Subscribe],
    subscriber: Subscriber,
    user: str | None,
    first: bool,
) -> HttpResponse | JsonResponse:
    """The replay after each topic's ``since`` (with the start when the stream starts),
    then ``Grip-Hold: stream`` on the topics' protocol channels (and the channel of the
    stream's ``user``, where a logout closes it) and a next link.

    On a next link, a topic whose replay could not be recovered (its history was lost:
    the proxy asks because the new epoch's first message did not follow what it had)
    gets a ``tidings.gap`` and the new history, as a live stream does."""
    settings = node.settings
    ok = await subscriber.run(subscriber.session.join_all(requests))
    items = subscriber.take()
    if not ok:
        failed = first_error(items)
        return error_response(failed or Error(None, "internal_error", "Internal server error."))
    events = _Events(topics)
    start = events.start(items, settings.sse_retry_ms)
    if not first:
        items = await _refill_lost(node, subscriber.user, items)
    body = (start if first else "") + events.render(items)
    response = HttpResponse(body, content_type="text/event-stream")
    current = {t: j.position for t, j in opened(items).items()}
    query = [("topic", t) for t in topics]
    query += [("since", cursor(current, topics)), ("link", sign({"t": topics, "u": user}))]
    return hold_stream(
        response,
        with_user({protocol_channel(t): current[t] for t in topics}, user),
        KEEPALIVE,
        settings.sse_keepalive,
        f"{settings.path}sse?{urlencode(query)}",
    )


async def _refill_lost(node: Node, user: Any, items: list[Output]) -> list[Output]:
    """``items`` (a join's outputs) with each topic whose resume was not recovered
    replayed from the start of its current epoch, after a :class:`Gap` there: what a
    live stream is sent when the history is lost under it."""
    lost = {j.topic for j in opened(items).values() if j.recovered is False}
    if not lost:
        return items
    again = ProxySubscriber(node, user, transport="grip sse")
    fresh = [Subscribe(None, t, Position(opened(items)[t].position.epoch, 0), None) for t in lost]
    if not await again.run(again.session.join_all(fresh)):
        return [Gap(t, opened(items)[t].start) for t in lost] + items
    refill = again.take()
    gaps: list[Output] = [Gap(t, j.start) for t, j in opened(refill).items()]
    kept = [i for i in items if not isinstance(i, Joined | Message) or i.topic not in lost]
    return gaps + kept + refill


async def _next_link(request: HttpRequest, node: Node) -> HttpResponse:
    """A stream's next link (``?link=``, signed by tidings, from the proxy): what came
    after its cursor."""
    link = unsign(request.GET.get("link", ""))
    if not isinstance(link, dict) or not isinstance(link.get("t"), list) or not link["t"]:
        return HttpResponse("Bad link.\n", status=400)
    topics: list[str] = link["t"]
    try:
        since = parse_cursor(request.GET.get("since", ""), topics)
    except ValueError:
        since = {}
    requests = [Subscribe(None, t, since.get(t), None) for t in topics]
    subscriber = ProxySubscriber(node, await request.auser(), transport="grip sse")
    user = link.get("u")
    user = user if isinstance(user, str) else None
    return await _held_by_proxy(node, topics, requests, subscriber, user, first=False)
