"""One subscriber client per transport, so a scenario is written once and run on each.

Every kind opens one topic (optionally resuming after a position), says how the server
opened it (``opened``: the topic's ``position`` and, on a resume, ``recovered``), hands
out the messages one by one, and can be *cut*: the network drops mid-stream (a
WebSocket or a stream aborted, a long-poll whose answer never arrives).

Kinds: ``ws`` (/realtime/ws), ``sse`` (/realtime/sse), ``poll`` (/realtime/poll), and
the same through a real Pushpin: ``grip-ws`` (WebSocket-over-HTTP), ``grip-sse``,
``grip-poll``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.http_helpers import next_event, sse_events
from tidings.testing import RequestFailed

KINDS = ["ws", "sse", "poll", "grip-ws", "grip-sse", "grip-poll"]


@dataclass
class Endpoint:
    """Where a client connects: the server itself, or the Pushpin in front of it."""

    url: str  # http://host:port
    origin: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/realtime/ws"


@dataclass
class Msg:
    topic: str
    position: str
    data: Any


@dataclass
class Sub:
    topic: str
    opened: dict[str, Any] = field(default_factory=dict)

    @property
    def recovered(self) -> bool | None:
        return self.opened.get("recovered")

    async def next(self, timeout: float = 30) -> Msg:
        raise NotImplementedError

    async def cut(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


def _refused(body: dict[str, Any], status: int | None = None) -> RequestFailed:
    """The server's refusal; ``status`` is the HTTP status it came with (HTTP kinds)."""
    error = body.get("error") or {}
    refused = RequestFailed(error.get("code", "?"), error.get("message", ""))
    refused.status = status  # type: ignore[attr-defined]
    return refused


class WsSub(Sub):
    ws: ClientConnection

    async def start(self, at: Endpoint, since: str | None, cookies: dict[str, str]) -> None:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
        self.ws = await connect(
            at.ws_url,
            origin=at.origin,
            additional_headers=headers,
            max_size=None,  # type: ignore[arg-type]
        )
        frame: dict[str, Any] = {"id": 1, "op": "subscribe", "topic": self.topic}
        if since:
            frame["since"] = since
        await self.ws.send(json.dumps(frame))
        reply = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        if not reply["ok"]:
            await self.ws.close()
            raise _refused(reply)
        self.opened = {k: reply[k] for k in ("position", "recovered") if k in reply}

    async def next(self, timeout: float = 30) -> Msg:
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if frame.get("op") == "message":
                return Msg(frame["topic"], frame["position"], frame["data"])

    async def cut(self) -> None:
        self.ws.transport.abort()

    async def close(self) -> None:
        await self.ws.close()


class SseSub(Sub):
    async def start(self, at: Endpoint, since: str | None, cookies: dict[str, str]) -> None:
        self.http = httpx.AsyncClient(base_url=at.url, timeout=30, cookies=cookies)
        headers = {"Last-Event-ID": since} if since else {}
        self._stream = self.http.stream(
            "GET", "/realtime/sse", params={"topic": self.topic}, headers=headers
        )
        response = await self._stream.__aenter__()
        if response.status_code != 200:
            body = json.loads(await response.aread())
            await self.close()
            raise _refused(body, response.status_code)
        self.events = sse_events(response)
        opening = await next_event(self.events)
        assert opening.event == "tidings.open", opening
        self.opened = json.loads(opening.data)["topics"][self.topic]

    async def next(self, timeout: float = 30) -> Msg:
        e = await next_event(self.events, timeout=timeout)
        assert e.event != "tidings.close", e.data
        return Msg(self.topic, str(e.id), json.loads(e.data))

    async def cut(self) -> None:
        await self.close()  # the connection is closed mid-stream

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._stream.__aexit__(None, None, None)
        await self.http.aclose()


class PollSub(Sub):
    async def start(self, at: Endpoint, since: str | None, cookies: dict[str, str]) -> None:
        self.http = httpx.AsyncClient(base_url=at.url, timeout=30, cookies=cookies)
        self.since = since
        self.buffer: list[Msg] = []
        body = await self._poll(0)
        self.opened = body["topics"][self.topic]

    async def _poll(self, timeout: float) -> dict[str, Any]:
        params: dict[str, Any] = {"topic": self.topic, "timeout": timeout}
        if self.since:
            params["since"] = self.since
        r = await self.http.get("/realtime/poll", params=params)
        body = r.json()
        if r.status_code != 200:
            raise _refused(body, r.status_code)
        if self.opened:  # polling on from the since it was given: nothing may be missed
            assert body["topics"][self.topic].get("recovered", True) is True, body
        self.buffer += [Msg(m["topic"], m["position"], m["data"]) for m in body["messages"]]
        self.since = body["since"]
        return dict(body)

    async def next(self, timeout: float = 30) -> Msg:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.buffer:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError
            await self._poll(min(10, max(1, int(left))))
        return self.buffer.pop(0)

    async def cut(self) -> None:
        """A poll whose answer is lost: the next one asks again from the same ``since``."""
        since = self.since
        poll = asyncio.ensure_future(self._poll(10))
        await asyncio.sleep(0.01)
        poll.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await poll
        self.since = since
        self.buffer.clear()

    async def close(self) -> None:
        await self.http.aclose()


async def open_sub(
    kind: str,
    at: Endpoint,
    topic: str,
    since: str | None = None,
    cookies: dict[str, str] | None = None,
) -> Sub:
    """Subscribe to ``topic`` over ``kind`` (see the module docstring); raise
    :class:`~tidings.testing.RequestFailed` when the server refuses."""
    cls = {"ws": WsSub, "sse": SseSub, "poll": PollSub}[kind.removeprefix("grip-")]
    sub = cls(topic)
    await sub.start(at, since, cookies or {})
    return sub
