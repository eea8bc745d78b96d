"""A minimal asyncio WebSocket client, cheap per received frame, for load generation.

Why hand-rolled: the generator must spend less CPU per delivery than the fastest
server it measures, or it measures itself. A full client library costs a task, a
queue and a decode per message; here a subscriber is one ``asyncio.Protocol`` whose
``data_received`` walks the server's (unmasked, RFC 6455) frames in the bytes it got,
counts the ``message`` frames, and, when asked, reads the send stamp with one
``bytes.find``. Nothing is decoded as JSON or text. Client frames are masked as the
RFC requires (websockets' C ``apply_mask``).

:class:`Tally` is shared by all subscribers of one phase: it counts deliveries and
wakes the phase when the expected number has arrived.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from typing import cast

from bench.wire import MESSAGE_PREFIX, STAMP

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover: the C extension ships in the wheels
    from websockets.utils import apply_mask

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # any 16-byte base64 value will do; the answer is not checked


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One masked, final client frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + apply_mask(payload, mask)


class Tally:
    """Deliveries counted across every subscriber during one phase."""

    __slots__ = ("count", "expected", "last_ns", "latencies", "record", "waiter")

    def __init__(self) -> None:
        self.count = 0
        self.expected = 0
        self.last_ns = 0
        self.record = False
        self.latencies: list[int] = []
        self.waiter: asyncio.Future[None] | None = None

    def arm(self, expected: int, record: bool) -> asyncio.Future[None]:
        """Start counting towards ``expected``; ``record`` keeps one latency per delivery."""
        self.count = 0
        self.expected = expected
        self.last_ns = 0
        self.record = record
        self.latencies = []
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter


class WSClient(asyncio.Protocol):
    """One WebSocket connection: handshake, then frames in, replies to :meth:`request`.

    A subclass that sets :attr:`track` has :meth:`message` called with every ``message``
    frame (the scale run reads each one's position); off, a delivery costs no call.
    """

    track = False

    def __init__(self, tally: Tally, host: str, port: int, path: str) -> None:
        self.tally = tally
        self.received = 0  # message frames this connection got, over its whole life
        self.close_code: int | None = None
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n\r\n"
        ).encode()
        self._transport: asyncio.Transport | None = None
        self._buf = b""
        self._open = False
        loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = loop.create_future()
        self._replies: deque[bytes] = deque()
        self._reply_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        error = ConnectionError(f"connection lost (close code {self.close_code})")
        if not self._opened.done():
            self._opened.set_exception(error)
        waiter = self._reply_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def data_received(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        if not self._open:
            head_end = data.find(b"\r\n\r\n")
            if head_end < 0:
                self._buf = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                line = data[: data.find(b"\r\n")].decode("latin-1")
                if not self._opened.done():
                    self._opened.set_exception(ConnectionError(f"handshake refused: {line}"))
                assert self._transport is not None
                self._transport.close()
                return
            self._open = True
            if not self._opened.done():  # a caller that gave up waiting cancelled it
                self._opened.set_result(None)
            data = data[head_end + 4 :]
        tally = self.tally
        record = tally.record
        track = self.track
        now = time.time_ns()
        n = len(data)
        i = 0
        count = 0
        while n - i >= 2:
            length = data[i + 1]  # server frames are never masked
            if length < 126:
                start = i + 2
            elif length == 126:
                if n - i < 4:
                    break
                length = (data[i + 2] << 8) | data[i + 3]
                start = i + 4
            else:
                if n - i < 10:
                    break
                length = int.from_bytes(data[i + 2 : i + 10], "big")
                start = i + 10
            end = start + length
            if end > n:
                break
            opcode = data[i] & 0x0F
            if opcode == 1 and data.startswith(MESSAGE_PREFIX, start):
                count += 1
                if record:
                    j = data.find(STAMP, start, end) + 4
                    tally.latencies.append(now - int(data[j : data.find(b",", j, end)]))
                if track:
                    self.message(data, start, end)
            else:
                self._control(opcode, data[start:end])
            i = end
        if i < n:
            self._buf = data[i:]
        if count:
            self.received += count
            tally.count += count
            tally.last_ns = now
            if tally.count >= tally.expected:
                waiter = tally.waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def message(self, data: bytes, start: int, end: int) -> None:
        """``data[start:end]`` is a ``message`` frame's payload (only when :attr:`track`)."""

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode in (1, 2):
            self._replies.append(payload)
            waiter = self._reply_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif opcode == 9:
            self.send(payload, opcode=10)  # pong
        elif opcode == 8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if self._transport is not None:
                self.send(payload[:2], opcode=8)
                self._transport.close()

    # -- API -------------------------------------------------------------------------
    async def opened(self) -> None:
        await self._opened

    def send(self, payload: bytes, opcode: int = 1) -> None:
        if self._transport is not None:
            self._transport.write(client_frame(payload, opcode))

    def send_raw(self, frames: bytes) -> None:
        """Write already-built client frames (a burst) in one go."""
        if self._transport is not None:
            self._transport.write(frames)

    async def request(self, payload: bytes, timeout: float = 30.0) -> bytes:
        """Send ``payload`` and return the next frame that is not a ``message``."""
        self.send(payload)
        return await self.reply(timeout)

    async def reply(self, timeout: float = 30.0) -> bytes:
        while not self._replies:
            self._reply_waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self._reply_waiter, timeout)
        return self._replies.popleft()

    def replies(self) -> list[bytes]:
        """Take every unsolicited reply so far (e.g. errors answering a burst)."""
        out = list(self._replies)
        self._replies.clear()
        return out

    def close(self) -> None:
        if self._transport is not None:
            self.send(b"\x03\xe8", opcode=8)
            self._transport.close()


async def connect(tally: Tally, host: str, port: int, path: str) -> WSClient:
    """Open a connection and finish the handshake."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: WSClient(tally, host, port, path), host, port)
    await client.opened()
    return client
