"""A minimal asyncio Server-Sent Events subscriber, cheap per received event.

The SSE counterpart of :class:`bench.wsclient.WSClient`, for the same reason: the
generator must spend less CPU per delivery than the server it measures. One
``asyncio.Protocol`` per stream (no task, no ``StreamReader.readline`` per line):
``data_received`` sends nothing back, undoes HTTP/1.1 chunked transfer encoding (a
header per chunk, and the server writes one chunk per batch of events, not per
event), and counts the ``message`` events in the complete events it has with one
``bytes.count``. During lone broadcasts it also reads the send stamp from each
``data:`` line with one ``bytes.find``, as the WebSocket subscriber does. Nothing is
decoded as JSON or text.

What tidings sends (``tidings.transports.sse``): ``retry:`` and ``event: tidings.open``
first (the stream is subscribed once that arrived), then per message
``id: <position>\\nevent: message\\ndata: <the message's data JSON>\\n\\n``, and
``: keep-alive`` comments when idle.
"""

from __future__ import annotations

import asyncio
import time
from typing import cast
from urllib.parse import quote

from bench.wire import STAMP
from bench.wsclient import Tally

MESSAGE = b"event: message\ndata: "  # one per message event: its (single) data line
OPEN = b"event: tidings.open\n"
CLOSE = b"event: tidings.close\n"


class SSEClient(asyncio.Protocol):
    """One ``GET <path>?topic=<topic>`` stream: headers, then events counted into ``tally``."""

    def __init__(self, tally: Tally, host: str, port: int, path: str, topic: str) -> None:
        self.tally = tally
        self.received = 0  # message events this stream got, over its whole life
        self.close_code: int | None = None  # 1 once the server sent tidings.close
        self._request = (
            f"GET {path}?topic={quote(topic)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ).encode()
        self._transport: asyncio.Transport | None = None
        self._raw = b""  # bytes not yet de-chunked: headers, or a partial chunk-size line
        self._events = b""  # de-chunked bytes after the last complete event
        self._headers_done = False
        self._chunked = False
        self._left = 0  # data bytes left in the current chunk
        self._open = False
        self._opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self._opened.done():
            self._opened.set_exception(ConnectionError("stream closed before tidings.open"))

    def data_received(self, data: bytes) -> None:
        if self._raw:
            data = self._raw + data
            self._raw = b""
        if not self._headers_done:
            head_end = data.find(b"\r\n\r\n")
            if head_end < 0:
                self._raw = data
                return
            head = data[:head_end].lower()
            if not head.startswith(b"http/1.1 200"):
                self._refuse(data[: data.find(b"\r\n")].decode("latin-1"))
                return
            self._headers_done = True
            self._chunked = b"\r\ntransfer-encoding: chunked" in head
            data = data[head_end + 4 :]
        if self._chunked:
            data = self._dechunk(data)
        if self._events:
            data = self._events + data
        cut = data.rfind(b"\n\n") + 2  # events are complete up to there
        if cut < 2:
            self._events = data
            return
        self._events = data[cut:]
        count = data.count(MESSAGE, 0, cut)
        if not self._open:
            self._opened_by(data, cut)
        if count:
            self._count(data, cut, count)
        if data.find(CLOSE, 0, cut) >= 0:  # the server gave up on this stream
            self.close_code = 1

    # -- parsing ---------------------------------------------------------------------
    def _dechunk(self, data: bytes) -> bytes:
        """The payload in ``data``. Chunks need not end between events (Django splits a
        long ``yield`` into 64 KiB chunks), so each chunk's trailing CRLF is dropped: it
        shows up as the empty line before the next chunk-size line."""
        parts = []
        i, n = 0, len(data)
        while i < n:
            left = self._left
            if left:
                j = min(n, i + left)
                parts.append(data[i:j])
                self._left = left - (j - i)
                i = j
                continue
            eol = data.find(b"\r\n", i)
            if eol < 0:
                self._raw = data[i:]
                break
            if eol == i:  # the CRLF that ends the previous chunk's data
                i += 2
                continue
            size = int(data[i:eol].split(b";", 1)[0], 16)
            if size == 0:  # the last chunk: the server ended the stream
                if self._transport is not None:
                    self._transport.close()
                break
            self._left = size
            i = eol + 2
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _opened_by(self, data: bytes, end: int) -> None:
        if data.find(OPEN, 0, end) >= 0:
            self._open = True
            self._opened.set_result(None)
        elif data.find(CLOSE, 0, end) >= 0:
            self._refuse("tidings.close before tidings.open")

    def _count(self, data: bytes, end: int, count: int) -> None:
        tally = self.tally
        now = time.time_ns()
        if tally.record:
            latencies = tally.latencies
            i = data.find(MESSAGE, 0, end)
            while i >= 0:
                j = data.find(STAMP, i + len(MESSAGE), end) + len(STAMP)
                latencies.append(now - int(data[j : data.find(b",", j, end)]))
                i = data.find(MESSAGE, j, end)
        self.received += count
        tally.count += count
        tally.last_ns = now
        if tally.count >= tally.expected:
            waiter = tally.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _refuse(self, why: str) -> None:
        if not self._opened.done():
            self._opened.set_exception(ConnectionError(f"SSE stream refused: {why}"))
        if self._transport is not None:
            self._transport.close()

    # -- API -------------------------------------------------------------------------
    async def opened(self) -> None:
        await self._opened

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def connect_sse(tally: Tally, host: str, port: int, path: str, topic: str) -> SSEClient:
    """Open a stream on ``topic`` and wait for its ``tidings.open`` event (subscribed)."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: SSEClient(tally, host, port, path, topic), host, port
    )
    await client.opened()
    return client
