"""A protocol client for tests, over the ``websockets`` package (required to use it).

    with live_server("demo.asgi:application") as srv:
        async with Client(srv.ws_url, origin=srv.url) as client:
            await client.subscribe("rooms.lobby")

Replies are matched to requests by id; every other frame is queued for the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any


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
