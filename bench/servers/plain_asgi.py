"""A plain ASGI app, no framework: one dict of topics, sequential ``await send()``.

What any ASGI server-side fan-out costs before a library adds its own work: the
publisher's task awaits ``send`` for every subscriber in turn (faster than a task per
subscriber, see shared/PEERS-PERF.md). Served by uvicorn:
``uvicorn bench.servers.plain_asgi:app --ws-per-message-deflate false``.
"""

from __future__ import annotations

import contextlib
from typing import Any

Send = Any  # an ASGI send callable

topics: dict[str, dict[Send, None]] = {}


async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    mine: list[str] = []
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                break
            text = event.get("text") or ""
            if text.startswith("pub "):
                topic, _, frame = text[4:].partition("\n")
                message = {"type": "websocket.send", "text": frame}
                for subscriber in list(topics.get(topic, ())):
                    with contextlib.suppress(Exception):  # that one is gone, not the others
                        await subscriber(message)
            elif text.startswith("sub "):
                topic = text[4:]
                topics.setdefault(topic, {})[send] = None
                mine.append(topic)
                await send({"type": "websocket.send", "text": "ok"})
    finally:
        for topic in mine:
            topics.get(topic, {}).pop(send, None)
