"""A TCP proxy that tests can take offline: the network between a browser and the server.

Chromium's offline emulation leaves open WebSockets alone, so it cannot show what a
real network loss does. Through this proxy, :meth:`Proxy.offline` cuts every open
connection and refuses new ones until :meth:`Proxy.online`. :attr:`Proxy.refuse`
refuses the connections whose first request matches (e.g. WebSocket upgrades), as a
proxy that does not do WebSockets would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._up = True
        self.refuse: Callable[[bytes], bool] | None = None  # called with the first bytes
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._call(self._serve())

    def _call(self, coro):  # run a coroutine on the proxy's loop and wait for it
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._client, sock=self._sock)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up:
            writer.transport.abort()
            return
        first = await reader.read(65536)
        if not first or (self.refuse is not None and self.refuse(first)):
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        if not self._up:  # taken offline while this one was being set up
            writer.transport.abort()
            up_writer.transport.abort()
            return
        up_writer.write(first)
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    def offline(self) -> None:
        """Cut every connection (no FIN, no close frame) and refuse new ones."""

        async def cut() -> None:
            self._up = False
            for w in list(self._writers):
                w.transport.abort()

        self._call(cut())

    def online(self) -> None:
        async def up() -> None:
            self._up = True

        self._call(up())

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()

        self._call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@contextlib.contextmanager
def proxy(host: str, port: int) -> Iterator[Proxy]:
    p = Proxy(host, port)
    p.start()
    try:
        yield p
    finally:
        p.stop()
