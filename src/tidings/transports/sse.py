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
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from tidings.listener import Listener
from tidings.messages import Position
from tidings.node import Node, get_node
from tidings.protocol import CLOSE_SLOW_CONSUMER
from tidings.transports.http import cursor, error, open_topics, parse_cursor

KEEPALIVE = ": keep-alive\n\n"


async def sse_view(request: HttpRequest) -> HttpResponseBase:
    if request.method != "GET":
        return error("not_allowed", "Use GET.", Allow="GET")
    node = get_node()
    opened = await open_topics(request, node)
    if not isinstance(opened, tuple):
        return opened
    _user, topics = opened
    resume = request.headers.get("Last-Event-ID") or request.GET.get("since")
    try:
        since = parse_cursor(resume, topics) if resume else {}
    except ValueError as e:
        return error("bad_request", f"Cannot resume from {str(resume)[:80]!r}: {e}")
    response = StreamingHttpResponse(
        stream(node, topics, since, resumed=bool(resume)), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def stream(
    node: Node, topics: list[str], since: dict[str, Position | None], *, resumed: bool
) -> AsyncIterator[str]:
    settings = node.settings
    async with Listener(node, topics) as listener:
        await listener.join(since)
        positions: dict[str, Position] = {}
        opened: dict[str, Any] = {}
        for topic in topics:
            result = listener.results[topic]
            start = since.get(topic)
            positions[topic] = start if result.recovered and start is not None else result.position
            opened[topic] = {"position": str(result.position)}
            if start is not None:
                opened[topic]["recovered"] = result.recovered
        data = json.dumps({"topics": opened}, separators=(",", ":"))
        yield (
            f"retry: {settings.sse_retry_ms}\n"
            f"id: {cursor(positions, topics)}\nevent: tidings.open\ndata: {data}\n\n"
        )
        single = len(topics) == 1
        while True:
            if not await listener.wait(settings.sse_keepalive):
                yield KEEPALIVE
                continue
            if listener.overflowed:
                code, reason = listener.closing or (CLOSE_SLOW_CONSUMER, "slow consumer")
                closing = {"code": code, "reason": reason}
                yield f"event: tidings.close\ndata: {json.dumps(closing)}\n\n"
                return
            chunks = []
            for message in listener.take():
                if single:
                    chunks.append(f"id: {message.position}\n{message.sse_body}")
                else:
                    positions[message.topic] = message.position
                    chunks.append(f"id: {cursor(positions, topics)}\n{message.sse_body}")
            yield "".join(chunks)
