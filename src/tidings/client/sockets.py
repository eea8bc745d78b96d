"""What the client's connection runs over: a :class:`Socket`, opened by an
:data:`Opener` — a real WebSocket by default (:func:`open_websocket`), or the in-process
socket of :func:`tidings.testing.connect`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from websockets.asyncio.client import connect
from websockets.typing import Origin, Subprotocol


class Socket(Protocol):
    """What the client needs of a WebSocket: ``websockets``' ``ClientConnection`` is one;
    :func:`tidings.testing.connect`'s in-process socket to the ASGI app is another."""

    @property
    def close_code(self) -> int | None: ...
    @property
    def close_reason(self) -> str | None: ...
    def __aiter__(self) -> AsyncIterator[str | bytes]: ...
    async def send(self, message: str) -> None: ...
    async def close(self) -> None: ...


# (url, origin, headers, subprotocols, timeout) -> an open socket, as a context
Opener = Callable[[str, str, dict[str, str], list[str], float], AbstractAsyncContextManager[Socket]]
TokenSource = Callable[[], Awaitable[str] | str]


def open_websocket(
    url: str, origin: str, headers: dict[str, str], subprotocols: list[str], timeout: float
) -> AbstractAsyncContextManager[Socket]:
    """The default opener: a real WebSocket, with the ``websockets`` library."""
    return connect(
        url,
        origin=Origin(origin),
        additional_headers=headers,
        subprotocols=[Subprotocol(p) for p in subprotocols] or None,
        open_timeout=timeout,
    )
