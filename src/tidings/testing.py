"""Test helpers: a real server in a subprocess, and a protocol client for it.

    with live_server("demo.asgi:application") as srv:
        async with Client(srv.ws_url, origin=srv.url) as client:
            await client.subscribe("rooms.lobby")

The server is uvicorn on a socket bound here to a free loopback port and handed to it
(``--fd``), so there is no race for the port. It is stopped with SIGTERM, then killed.
Requires the ``websockets`` package for :class:`Client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LiveServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/realtime/ws"

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextlib.contextmanager
def live_server(
    app: str,
    *,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    log_path: str | None = None,
    args: tuple[str, ...] = (),
    ready_timeout: float = 30.0,
) -> Iterator[LiveServer]:
    """Run ``uvicorn app`` on a free loopback port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(2048)
    port = sock.getsockname()[1]
    if log_path is None:
        log_path = os.path.join(
            os.environ.get("TMPDIR", "/tmp"), f"tidings-server-{port}-{os.getpid()}.log"
        )
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--fd",
                str(sock.fileno()),
                "--log-level",
                "info",
                "--timeout-graceful-shutdown",
                "5",
                *args,
            ],
            pass_fds=(sock.fileno(),),
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sock.close()
    server = LiveServer(host, port, process, log_path)
    try:
        _wait_ready(server, ready_timeout)
        yield server
    finally:
        server.stop()


def _wait_ready(server: LiveServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        if "Application startup complete" in server.log():
            return
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.log()}")


class RequestFailed(Exception):
    """The server answered a request with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Client:
    """A minimal protocol v1 client over the ``websockets`` library, for tests.

    Replies are matched by id; every other frame lands in :attr:`frames`, and
    :meth:`next_message` waits for the next ``message`` frame.
    """

    url: str
    origin: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    connect_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._next_id = 0
        self._replies: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Client:
        from websockets.asyncio.client import connect

        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.ws = await connect(
            self.url,
            origin=self.origin,  # type: ignore[arg-type]  # websockets' Origin: a NewType of str
            additional_headers=headers,
            **self.connect_kwargs,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                waiter = self._replies.pop(frame.get("id"), None) if "ok" in frame else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)
                else:
                    await self.frames.put(frame)
        finally:
            for waiter in self._replies.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("connection closed"))

    async def request(self, op: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send ``op`` and return the reply; raise :class:`RequestFailed` on an error."""
        self._next_id += 1
        rid = self._next_id
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[rid] = waiter
        await self.ws.send(json.dumps({"id": rid, "op": op, **fields}))
        reply = await asyncio.wait_for(waiter, timeout)
        if not reply["ok"]:
            raise RequestFailed(reply["error"]["code"], reply["error"]["message"])
        return reply

    async def subscribe(self, topic: str, **fields: Any) -> dict[str, Any]:
        return await self.request("subscribe", topic=topic, **fields)

    async def publish(self, topic: str, data: Any, **fields: Any) -> dict[str, Any]:
        return await self.request("publish", topic=topic, data=data, **fields)

    async def next_frame(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def next_message(self, timeout: float = 10.0) -> dict[str, Any]:
        while True:
            frame = await self.next_frame(timeout)
            if frame.get("op") == "message":
                return frame
