"""uvicorn's protocols with the limits a realtime site needs before the app sees a byte.

    uvicorn myproject.asgi:application \\
        --http tidings.serve:HttpProtocol --ws tidings.serve:WebSocketProtocol

(:data:`UVICORN_ARGS`; ``make demo`` and :func:`tidings.testing.live_server` run the
same). Three guards live here because the ASGI app cannot have them: it is called
only once a request's headers are complete, and a WebSocket frame reaches it only
once uvicorn has read (and inflated) the whole of it.

- **Inflated frame size.** A WebSocket message may be at most
  ``TIDINGS["MAX_FRAME_BYTES"]`` once inflated; websockets' permessage-deflate decoder
  stops at that size instead of uvicorn's ``--ws-max-size`` (16 MiB), and the client
  is closed with 1009. Without this, a 15 KB compressed frame costs 15 MiB.
- **Header timeout.** A request's headers (a WebSocket handshake too) must be complete
  within ``TIDINGS["HEADER_TIMEOUT"]`` seconds of the connection (or of the previous
  response): else 408 and the connection is closed. uvicorn has no such timeout
  (its ``--timeout-keep-alive`` is reset by every byte; uvicorn issues #157, #160).
- **Connections per client address.** At most ``TIDINGS["MAX_CONNECTIONS_PER_IP"]``
  per address and process; one more is answered 429 and closed. A direct client is
  counted from the TCP accept, so slow and silent connections count. A peer in
  uvicorn's ``--forwarded-allow-ips`` is a proxy: its own connections are not
  counted, each of its requests counts for the ``X-Forwarded-For`` client (uvicorn's
  own parsing of it), from its headers to its response's end; a request it sends
  without that header is not counted (loopback clients, as uvicorn trusts 127.0.0.1
  by default; a proxy that does not say who is behind it).

Written here rather than found: no uvicorn option does the second and the third.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from tidings.conf import get_settings
from tidings.types import SEND_TEXT

UVICORN_ARGS = (
    "--http",
    "tidings.serve:HttpProtocol",
    "--ws",
    "tidings.serve:WebSocketProtocol",
)

_open: Counter[str] = Counter()  # client address -> connections (or proxied requests)
_trust: dict[int, _TrustedHosts] = {}


def _trusted(config: Config) -> _TrustedHosts | None:
    """The proxies whose ``X-Forwarded-For`` uvicorn believes (none without proxy headers)."""
    if not config.proxy_headers:
        return None
    trusted = _trust.get(id(config))
    if trusted is None:
        trusted = _trust[id(config)] = _TrustedHosts(config.forwarded_allow_ips)
    return trusted


def acquire(address: str) -> bool:
    """Count one more connection for ``address``; ``False`` (not counted) past the cap."""
    cap = get_settings().max_connections_per_ip
    if cap and _open[address] >= cap:
        return False
    _open[address] += 1
    return True


def release(address: str | None) -> None:
    """Count one connection less for ``address`` (``None``: one that was not counted)."""
    if address is None:
        return
    _open[address] -= 1
    if _open[address] <= 0:
        del _open[address]


def _response(status: bytes, text: str) -> bytes:
    body = text.encode()
    return b"".join(
        [
            b"HTTP/1.1 ",
            status,
            b"\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n",
            b"content-length: %d\r\n\r\n" % len(body),
            body,
        ]
    )


TOO_MANY = _response(b"429 Too Many Requests", "Too many connections from this address.")
TIMED_OUT = _response(b"408 Request Timeout", "The request's headers took too long.")


class Inbox:
    """What uvicorn's WebSocket protocol asks of its ``asyncio.Queue`` of events for the
    app (``put_nowait``, ``get``, ``empty``). uvicorn pauses reading after each message
    until it is taken, so it holds one or two events: a list does, where the queue kept
    three deques. Readers wait in order, as on the queue (an app may read from more
    than one task)."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._wake_next()

    async def get(self) -> Any:
        while not self._items:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if self._waiters is not None and waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif self._items and waiter.done() and not waiter.cancelled():
                    self._wake_next()  # it was woken for an item it will not take
                raise
        return self._items.pop(0)

    def _wake_next(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class Flag:
    """``asyncio.Event`` as uvicorn's ``writable`` uses it (``set``, ``clear``,
    ``is_set``, ``wait``), holding no deque until something waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a per-address count."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counted: list[str | None] = []  # the connection's, each request's
        self.header_timer: asyncio.TimerHandle | None = None
        self.refused = False
        self.proxy = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = self.client[0] if self.client else None
        trusted = _trusted(self.config)
        self.proxy = trusted is not None and peer in trusted
        if peer is not None and not self.proxy:
            if not acquire(peer):
                self._refuse(TOO_MANY)
                return
            self.counted.append(peer)
        self._arm()

    def _arm(self) -> None:
        """The next request's headers must be complete within ``HEADER_TIMEOUT``."""
        self._disarm()
        timeout = get_settings().header_timeout
        if timeout > 0:
            self.header_timer = self.loop.call_later(timeout, self._refuse, TIMED_OUT)

    def _disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _refuse(self, response: bytes) -> None:
        """Answer ``response`` and close; what the client still sends is discarded."""
        self._disarm()
        self.refused = True
        if not self.transport.is_closing():
            self.transport.write(response)
            self.loop.call_later(1.0, self.transport.close)  # let the answer be read

    def data_received(self, data: bytes) -> None:
        if self.refused:  # answered already: what else comes is not read
            self.transport.close()
            return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        if self.proxy:  # one entry per request, counted or not, popped at its end
            address = self._forwarded_client()
            if address is not None and not acquire(address):
                self._refuse(TOO_MANY)  # the rest of this request is not parsed
                return
            self.counted.append(address)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.refused:
            super().on_message_complete()

    def _forwarded_client(self) -> str | None:
        """The client a trusted proxy names in ``X-Forwarded-For`` (uvicorn's parsing);
        ``None`` when it names none: then who is behind is unknown, and not counted."""
        trusted = _trusted(self.config)
        forwarded = b", ".join(v for k, v in self.headers if k == b"x-forwarded-for")
        if trusted is None or not forwarded:
            return None
        return trusted.get_trusted_client_address(forwarded.decode("latin-1"))[0] or None

    def on_response_complete(self) -> None:
        if self.proxy and self.counted:
            release(self.counted.pop(0))
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._arm()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        if self.refused:
            return
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if isinstance(protocol, WebSocketProtocol):
            protocol.counted, self.counted = self.counted, []

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        while self.counted:
            release(self.counted.pop(0))
        super().connection_lost(exc)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets (sans-I/O) protocol: no message over ``MAX_FRAME_BYTES``,
    counted before or after inflating; it keeps the upgraded connection's count.

    It also offers the app a synchronous send of a text frame, in the scope's
    extensions as :data:`SEND_TEXT`: what ASGI's ``send()`` does for a text frame when
    the socket is writable, without a coroutine and an event dict per frame. A fan-out
    writes one frame to each of N connections; this is what makes it cost what raw
    ``websockets``' ``broadcast()`` costs (docs/performance.md)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = get_settings().max_frame_bytes
        if self.conn.max_message_size is None or self.conn.max_message_size > limit:
            self.conn.max_message_size = limit
        self.counted: list[str | None] = []
        # What an idle connection holds: uvicorn's asyncio.Queue and Event keep four
        # deques (~3 KB); these do the same for its one reader in a few hundred bytes.
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        while self.counted:
            release(self.counted.pop(0))
        super().connection_lost(exc)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the app's task has not started: it sees the extension
            scope["extensions"][SEND_TEXT] = self.send_text_now

    def start_keepalive(self) -> None:
        """Called once, right after the accept was written: the handshake's request
        and response (their headers, ~3 KB) are not needed any more."""
        self.request = self.response = None  # type: ignore[assignment]
        super().start_keepalive()

    def send_text_now(self, data: bytes) -> bool:
        """Write a text frame of UTF-8 ``data`` now; ``False`` when it cannot be done
        without waiting (not accepted yet, closing, gone, the peer reads slowly): then
        use ``send()``, which waits or raises as ASGI says."""
        if (
            self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or not self.writable.is_set()
        ):
            return False
        try:
            self.conn.send_text(data)
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True
