"""Item 5, the second half: a socket whose send fails (not a disconnect) is closed with
1011, never left half-dead (pings unanswered, nothing more sent).

Every way data enters tidings is strict JSON now (tests/security/test_strict_json.py),
so no client can make a send fail any more; this drives the WebSocket writer with an
ASGI ``send`` that fails the way uvicorn's does on text it cannot encode as UTF-8.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import tidings
from tidings.core.queue import Queue
from tidings.server.writer import Writer


class Socket:
    """An ASGI WebSocket's ``send``: text must be UTF-8, as for uvicorn."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        if event["type"] == "websocket.send":
            event["text"].encode("utf-8")  # UnicodeEncodeError for a lone surrogate
        self.events.append(event)


def writer(socket: Socket) -> tuple[Writer, Queue[Any]]:
    w = Writer(socket.send, render=lambda output: None)  # type: ignore[arg-type]
    queue: Queue[Any] = Queue(10)
    w.attach(queue)
    return w, queue


async def closed(socket: Socket) -> dict[str, Any]:
    for _ in range(100):
        if socket.events and socket.events[-1]["type"] == "websocket.close":
            return socket.events[-1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no close frame: {socket.events}")


async def test_a_send_in_place_that_fails_closes_with_1011():
    socket = Socket()
    w, _ = writer(socket)
    assert w.write_now("\ud800")
    assert (await closed(socket))["code"] == 1011
    assert w.gone
    w.write_now("fine")  # nothing more is written
    assert [e["type"] for e in socket.events] == ["websocket.close"]


async def test_a_queued_send_that_fails_closes_with_1011_after_what_went_before():
    socket = Socket()
    w, queue = writer(socket)
    for text in ("one", "\ud800", "three"):
        queue.put(text, None)
    w.wake()
    assert (await closed(socket))["code"] == 1011
    assert [e.get("text") for e in socket.events] == ["one", None]


def test_a_format_that_no_socket_can_write_is_refused_at_publish():
    with pytest.raises(ValueError):
        tidings.publish("test.strict", 1, ws_message="\ud800", on_commit=False)
