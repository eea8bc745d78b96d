"""Talk to an ASGI application in this process: a WebSocket, an HTTP request whose
answer streams. No server, no socket: the application runs as a task on the test's
event loop, so it sees the test's database (Django's ``TestCase`` transaction too: its
sync calls run in the test's thread, as asgiref runs them).

asgiref's ``ApplicationCommunicator`` cancels the application when an expected event
does not come in time; a realtime client waits as long as it likes, and an SSE stream
never ends by itself, so these keep their own two queues. httpx's ``ASGITransport``
reads a whole response before it returns any of it: no good for a stream either.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosedOK, InvalidHandshake
from websockets.frames import Close

from tidings.types import ASGIApp

CLIENT = ("127.0.0.1", 50000)


def scope_of(kind: str, url: str, headers: dict[str, str], method: str = "GET") -> dict[str, Any]:
    """The ASGI scope of a request to ``url`` (``http://testserver/path?query``)."""
    parts = urlsplit(url)
    host = parts.netloc or "testserver"
    secure = parts.scheme in ("https", "wss")
    raw = [(b"host", host.encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items() if k.lower() != "host"]
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": ("wss" if secure else "ws") if kind == "websocket" else parts.scheme or "http",
        "path": parts.path or "/",
        "raw_path": (parts.path or "/").encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": raw,
        "client": CLIENT,
        "server": (parts.hostname or "testserver", parts.port or (443 if secure else 80)),
    }
    if kind == "http":
        scope["method"] = method
    else:
        scope["subprotocols"] = []
    return scope


class _App:
    """The application running as a task, and the queues in and out of it."""

    def __init__(self, app: ASGIApp, scope: dict[str, Any]) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.ensure_future(app(scope, self.inbox.get, self._sent))

    async def _sent(self, event: Any) -> None:
        await self.outbox.put(dict(event))

    async def next(self) -> dict[str, Any] | None:
        """The application's next event; ``None`` once it has returned (its exception,
        if it raised)."""
        if self.outbox.empty() and self.task.done():
            self.task.result()
            return None
        get = asyncio.ensure_future(self.outbox.get())
        try:
            await asyncio.wait({get, self.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not get.done():
                get.cancel()
        if get.done() and not get.cancelled():
            return get.result()
        self.task.result()
        return None

    async def end(self, event: dict[str, Any], timeout: float) -> None:
        """Tell it the client is gone; wait for it to return (cancel it after ``timeout``)."""
        await self.inbox.put(event)
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class AppSocket:
    """A WebSocket to an ASGI application in this process, shaped as the ``websockets``
    connection :class:`tidings.client.Client` uses (send, iterate, close)."""

    def __init__(
        self,
        app: ASGIApp,
        url: str,
        headers: dict[str, str],
        subprotocols: list[str],
        timeout: float,
    ) -> None:
        scope = scope_of("websocket", url, headers)
        scope["subprotocols"] = subprotocols
        self._app = _App(app, scope)
        self._timeout = timeout
        self.close_code: int | None = None
        self.close_reason: str | None = None

    async def open(self) -> None:
        """The handshake: the application accepts, or refuses (``InvalidHandshake``)."""
        await self._app.inbox.put({"type": "websocket.connect"})
        event = await asyncio.wait_for(self._app.next(), self._timeout)
        if event is None or event["type"] != "websocket.accept":
            code = None if event is None else event.get("code")
            await self._app.end({"type": "websocket.disconnect", "code": 1006}, self._timeout)
            raise InvalidHandshake(f"the application refused the WebSocket (close {code})")

    async def __aenter__(self) -> AppSocket:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, message: str) -> None:
        if self.close_code is not None:
            raise ConnectionClosedOK(Close(self.close_code, self.close_reason or ""), None)
        await self._app.inbox.put({"type": "websocket.receive", "text": message})

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        while self.close_code is None:
            event = await self._app.next()
            if event is None:
                self.close_code, self.close_reason = 1006, "the application returned"
            elif event["type"] == "websocket.send":
                text = event.get("text")
                yield text if text is not None else event.get("bytes") or b""
            elif event["type"] == "websocket.close":
                self.close_code = event.get("code", 1000)
                self.close_reason = event.get("reason") or ""
                await self._app.end(
                    {"type": "websocket.disconnect", "code": self.close_code}, self._timeout
                )

    async def close(self, code: int = 1000) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, ""
            await self._app.end({"type": "websocket.disconnect", "code": code}, self._timeout)


class AppResponse:
    """An HTTP request to an ASGI application in this process; its answer as it streams."""

    def __init__(
        self,
        app: ASGIApp,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes = b"",
        timeout: float = 10.0,
    ) -> None:
        self._app = _App(app, scope_of("http", url, headers, method))
        self._app.inbox.put_nowait({"type": "http.request", "body": body, "more_body": False})
        self._timeout = timeout
        self.status = 0
        self.headers: dict[str, str] = {}
        self._done = False

    async def start(self) -> AppResponse:
        """Until the status and headers come (within the timeout)."""
        event = await asyncio.wait_for(self._app.next(), self._timeout)
        if event is None or event["type"] != "http.response.start":
            raise RuntimeError(f"the application answered no response: {event!r}")
        self.status = event["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in event.get("headers", [])}
        return self

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as the application sends it, until it ends."""
        while not self._done:
            event = await self._app.next()
            if event is None:
                self._done = True
                return
            if event["type"] == "http.response.body":
                self._done = not event.get("more_body", False)
                yield event.get("body", b"")

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def close(self) -> None:
        """The client goes away (a stream's end, for the application)."""
        await self._app.end({"type": "http.disconnect"}, self._timeout)
