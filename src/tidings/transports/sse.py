"""Server-Sent Events: ``GET /realtime/sse?topic=a&topic=b``.

Each event is ``id: <cursor>`` (every topic's position, see :mod:`tidings.transports.http`),
``event: <event name>``, ``data: <JSON>``. The stream starts with ``retry:`` and an
``event: tidings.open`` whose data says, per topic, where it stands and whether the
resume from ``Last-Event-ID`` (or ``?since=``) was ``recovered``. A comment line keeps
idle streams alive through proxies. The view is async and the stream an async
generator: an idle client costs no thread, and when the client goes away Django cancels
the generator, which unsubscribes at once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from tidings import grip
from tidings.core.messages import Position
from tidings.core.presence import Entry
from tidings.core.protocol import CLOSE_SLOW_CONSUMER
from tidings.listener import Listener
from tidings.server.node import Node, get_node
from tidings.server.tracker import find_tracked
from tidings.transports.http import StreamRequest, cursor, starting_points, stream_request

KEEPALIVE = ": keep-alive\n\n"


async def sse_view(request: HttpRequest) -> HttpResponseBase:
    node = get_node()
    behind_proxy = bool(node.settings.grip) and grip.proxied(request, node.settings)
    if behind_proxy:  # Pushpin following a held stream's next link
        linked = await grip.sse_next(request, node)
        if linked is not None:
            return linked
    resume = request.headers.get("Last-Event-ID") or request.GET.get("since")
    req = await stream_request(request, node, resume)
    if not isinstance(req, StreamRequest):
        return req
    if behind_proxy and not req.presence:  # Pushpin holds it (presence: held here)
        return await grip.sse_hold(request, node, req.topics, req.since, first=True)
    response = StreamingHttpResponse(stream(node, req), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def stream(node: Node, req: StreamRequest) -> AsyncIterator[str]:
    settings = node.settings
    ref = secrets.token_urlsafe(12)  # this stream's presence entries
    tracked: list[str] = []
    async with Listener(node, req.topics, req.user) as listener:
        await listener.join(req.since)
        positions, opened = starting_points(listener, req)
        data = json.dumps({"topics": opened}, separators=(",", ":"))
        yield (
            f"retry: {settings.sse_retry_ms}\n"
            f"id: {cursor(positions, req.topics)}\nevent: tidings.open\ndata: {data}\n\n"
        )
        try:
            for topic, value in req.presence.items():
                yield presence_event(await node.tracker.watch(topic, listener))
                entry = await _member(topic, req.user, value)
                if entry is not None:
                    await node.tracker.join(topic, ref, entry)
                    tracked.append(topic)
            async for chunk in _events(listener, req.topics, positions, settings.sse_keepalive):
                yield chunk
        finally:
            for topic in tracked:
                await node.tracker.leave(topic, ref)
            for topic in req.presence:
                await node.tracker.unwatch(topic, listener)


async def _member(topic: str, user: Any, value: Any) -> Entry | None:
    tracked = find_tracked(topic)
    if not isinstance(value, dict) or tracked is None:
        return None  # watch only
    member = await tracked.member_of(user, topic)
    return None if member is None else Entry(member[0], member[1], value)


def presence_event(frame: str) -> str:
    """A presence frame as an SSE event (no ``id``: presence has no position)."""
    name = (
        "tidings.presence_diff" if frame.startswith('{"op":"presence_diff"') else "tidings.presence"
    )
    return f"event: {name}\ndata: {frame}\n\n"


async def _events(
    listener: Listener, topics: list[str], positions: dict[str, Position], keepalive: float
) -> AsyncIterator[str]:
    single = len(topics) == 1
    while True:
        if not await listener.wait(keepalive):
            yield KEEPALIVE
            continue
        if listener.overflowed:
            code, reason = listener.closing or (CLOSE_SLOW_CONSUMER, "slow consumer")
            closing = {"code": code, "reason": reason}
            yield f"event: tidings.close\ndata: {json.dumps(closing)}\n\n"
            return
        chunks = []
        if listener.presence_frames:
            frames, listener.presence_frames = listener.presence_frames, []
            chunks += [presence_event(frame) for frame in frames]
        for message in listener.take():
            if single:
                chunks.append(f"id: {message.position}\n{message.sse_body}")
            else:
                positions[message.topic] = message.position
                chunks.append(f"id: {cursor(positions, topics)}\n{message.sse_body}")
        yield "".join(chunks)
