"""The asyncio client: one WebSocket to ``/realtime/ws`` that comes back by itself.

A task owns the socket. It connects (with the session cookie or headers given),
subscribes every topic again after each reconnect with ``since`` = the last position
seen, so the server replays what was missed, and drops a message whose position was
already seen. Each subscription has a bounded queue: while its reader is behind, the
task stops reading the socket, and the server's slow-consumer limit (close 4009) cuts
the connection rather than this process's memory growing; the client then reconnects
and resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from websockets.exceptions import WebSocketException

from tidings.client.sockets import Opener, Socket, TokenSource, open_websocket
from tidings.client.state import Backoff, Roster, is_newer
from tidings.exceptions import ClientError

logger = logging.getLogger("tidings.client")

NO_RECONNECT = {1000, 1009}  # "nothing to do" and "fix the sender" (docs/protocol.md)
IDLE = 4010  # closed for holding no subscription: reconnect once there is one
TRY_AGAIN = 1013  # too many connections at once: "try again in N s"
_END: Any = object()  # ends a subscription's iteration


class Message(NamedTuple):
    """A message as every transport delivers it."""

    topic: str
    position: str
    event: str
    data: Any


class Subscription:
    """One topic: iterate it for its messages (``async for message in sub``)."""

    def __init__(
        self,
        client: Client,
        topic: str,
        since: str | None,
        presence: bool | dict[str, Any] | None,
        on_gap: Callable[[Subscription], object] | None,
        max_queue: int,
    ) -> None:
        self.client = client
        self.topic = topic
        self.position: str | None = since  # the last position seen
        self.recovered: bool | None = None  # the last subscribe reply's
        self.presence: Roster | None = Roster() if presence else None
        self.active = True
        self._meta = presence
        self._on_gap = on_gap
        self._queue: asyncio.Queue[Any] = asyncio.Queue(max_queue)
        self._error: ClientError | None = None
        self._first: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later read ends too
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        message: Message = item
        return message

    async def get(self, timeout: float | None = None) -> Message:
        """The next message; :class:`TimeoutError` if none comes within ``timeout``."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    async def unsubscribe(self) -> None:
        """Stop this subscription; its iteration ends."""
        if self.active:
            self._end(None)
            del self.client._subs[self.topic]
            with contextlib.suppress(ClientError):
                await self.client._request({"op": "unsubscribe", "topic": self.topic}, wait=False)

    async def update(self, meta: dict[str, Any]) -> None:
        """Change this connection's presence meta on the topic (kept across reconnects)."""
        await self.client._request({"op": "presence", "topic": self.topic, "meta": meta})
        self._meta = meta

    def _frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"op": "subscribe", "topic": self.topic}
        if self.position is not None:
            frame["since"] = self.position
        if self._meta:
            frame["presence"] = self._meta
        return frame

    def _answered(self, reply: dict[str, Any]) -> None:
        if not reply.get("ok"):
            self._end(ClientError.from_reply(reply))
            self.client._subs.pop(self.topic, None)
            return
        resumed = self.position is not None
        self.recovered = reply.get("recovered")
        if self.recovered is not True:
            # Nothing replays: stand where the server says. (When recovered, the replayed
            # messages move the position themselves; the reply's head would drop them.)
            self.position = reply.get("position", self.position)
            if resumed and self._first.done() and self._on_gap:
                self._on_gap(self)
        if not self._first.done():
            self._first.set_result(None)

    def _end(self, error: ClientError | None) -> None:
        self.active = False
        self._error = error
        if not self._first.done():
            if error is not None:
                self._first.set_exception(error)
            else:
                self._first.cancel()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_END)


class Client:
    """A tidings client over one WebSocket; see :func:`connect`."""

    def __init__(
        self,
        url: str,
        *,
        origin: str | None = None,
        cookies: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        backoff: Backoff | None = None,
        timeout: float = 10.0,
        max_queue: int = 1000,
        opener: Opener = open_websocket,
        token: str | TokenSource | None = None,
    ) -> None:
        self.url = url
        self.opener = opener
        self.token = token  # a tidings.token(), or what gives a fresh one before each connect
        parts = urlsplit(url)
        # A browser's Origin is its page's: by default, the server's own HTTP address.
        self.origin = origin or f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
        self.headers = dict(headers or {})
        if cookies:
            self.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self.backoff = backoff or Backoff()
        self.timeout = timeout
        self.max_queue = max_queue
        self.state = "closed"  # connecting, open, closed
        self.last_close: tuple[int | None, str] | None = None  # the last connection's end
        self._subs: dict[str, Subscription] = {}
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._ws: Socket | None = None
        self._open = asyncio.Event()
        self._wanted = asyncio.Event()  # after 4010: something to subscribe or ask again
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect, retrying with backoff; returns once the first connection is open."""
        self._start()
        await self._open.wait()

    def _start(self) -> None:
        if self._task is None:
            self.state = "connecting"
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Close for good (a normal closure, 1000): pending requests fail, subscriptions'
        iterations end."""
        self.state = "closed"
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(OSError, WebSocketException, TimeoutError):
                await asyncio.wait_for(ws.close(), self.timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in list(self._subs.values()):
            sub._end(None)
        self._subs.clear()

    async def subscribe(
        self,
        topic: str,
        *,
        since: str | None = None,
        presence: bool | dict[str, Any] | None = None,
        on_gap: Callable[[Subscription], object] | None = None,
    ) -> Subscription:
        """Subscribe and wait for the server's answer; :class:`ClientError` if refused.

        ``since``: resume after this position. ``presence``: ``True`` to watch the
        topic's presence (``sub.presence``), or a meta to be tracked with it too.
        ``on_gap(sub)``: called when a resume after a reconnect could not replay what
        was missed (``sub.recovered`` is ``False``): refetch your state.
        """
        if topic in self._subs:
            return self._subs[topic]
        sub = Subscription(self, topic, since, presence, on_gap, self.max_queue)
        self._subs[topic] = sub
        self._start()
        self._wanted.set()
        if self._ws is not None:
            await self._subscribe(self._ws, sub)
        async with asyncio.timeout(self.timeout):
            await sub._first
        return sub

    async def publish(self, topic: str, data: Any, *, event: str | None = None) -> str | None:
        """Publish as this client (the topic's rule and handler decide); the position,
        or ``None`` when the handler broadcast nothing. A publish in flight when the
        connection drops fails with ``disconnected``: it may or may not have been made."""
        frame = {"op": "publish", "topic": topic, "data": data}
        if event is not None:
            frame["event"] = event
        reply = await self._request(frame)
        position: str | None = reply.get("position")
        return position

    async def presence(self, topic: str) -> dict[str, Any]:
        """A subscribed, tracked topic's presence: ``{"state": ...}`` or ``{"count": ...}``."""
        reply = await self._request({"op": "presence", "topic": topic})
        return {k: v for k, v in reply.items() if k in ("state", "count")}

    async def ping(self) -> None:
        await self._request({"op": "ping"})

    async def _request(self, frame: dict[str, Any], wait: bool = True) -> dict[str, Any]:
        """Send ``frame`` once connected (waiting at most ``timeout``), and its reply."""
        if self.state == "closed" and self._task is not None:
            raise ClientError("closed", "the client is closed")
        self._start()
        self._wanted.set()
        async with asyncio.timeout(self.timeout):
            await self._open.wait()
            ws = self._ws
            if ws is None:
                raise ClientError("disconnected", "the connection closed")
            reply = self._send(ws, frame)
            if not wait:
                return {}
            answer = await reply
        if not answer.get("ok"):
            raise ClientError.from_reply(answer)
        return answer

    def _send(self, ws: Socket, frame: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        self._next_id += 1
        frame["id"] = self._next_id
        reply = self._replies[self._next_id] = asyncio.get_running_loop().create_future()
        asyncio.ensure_future(ws.send(json.dumps(frame)))  # noqa: RUF006 (the reply tells)
        return reply

    async def _subscribe(self, ws: Socket, sub: Subscription) -> None:
        def answered(reply: asyncio.Future[dict[str, Any]]) -> None:
            if not reply.cancelled() and reply.exception() is None:
                sub._answered(reply.result())  # else: resubscribed on the next connection

        self._send(ws, sub._frame()).add_done_callback(answered)

    async def _run(self) -> None:
        attempt = 0
        while True:
            code, reason = None, ""
            try:
                protocols = await self._subprotocols()
                async with self.opener(
                    self.url, self.origin, self.headers, protocols, self.timeout
                ) as ws:
                    self._ws, self.state = ws, "open"
                    self._open.set()
                    for sub in list(self._subs.values()):
                        await self._subscribe(ws, sub)
                    async for raw in ws:
                        attempt = 0  # a frame came back: this connection works
                        await self._receive(json.loads(raw))
                code, reason = ws.close_code, ws.close_reason or ""
            except (OSError, WebSocketException, TimeoutError) as e:
                received = getattr(e, "rcvd", None)
                code = getattr(received, "code", None)
                reason = getattr(received, "reason", None) or str(e)
            finally:
                self._ws = None
                self._open.clear()
                self._fail_replies(ClientError("disconnected", f"the connection closed ({code})"))
            if self.state == "closed":  # close() was called
                return
            if code in NO_RECONNECT:
                self.state, self.last_close = "closed", (code, reason)
                for sub in list(self._subs.values()):
                    sub._end(None)
                self._open.set()  # wake waiters: they see "closed"
                return
            self.state = "connecting"
            self.last_close = (code, reason)
            delay = self.backoff.delay(attempt)
            hint = re.search(r"in ([0-9.]+) s", reason) if code == TRY_AGAIN else None
            if hint:  # the server admits a reconnect storm at a bounded rate: wait so long
                delay = max(delay, float(hint.group(1)))
            logger.warning(
                "tidings client: %s closed (%s), again in %.1f s", self.url, reason, delay
            )
            if code == IDLE and not self._subs:
                self._wanted.clear()
                await self._wanted.wait()
            await asyncio.sleep(delay)
            attempt += 1

    async def _subprotocols(self) -> list[str]:
        """The token, if any, travels as a subprotocol beside ``tidings`` (docs/client.md)."""
        token = self.token
        if token is None:
            return []
        if callable(token):
            given = token()
            token = given if isinstance(given, str) else await given
        return ["tidings", "tidings.token." + token]

    def _fail_replies(self, error: ClientError) -> None:
        replies, self._replies = self._replies, {}
        for reply in replies.values():
            if not reply.done():
                reply.set_exception(error)
                reply.exception()  # retrieved: a request nobody awaits is no warning

    async def _receive(self, frame: dict[str, Any]) -> None:
        if "id" in frame:
            reply = self._replies.pop(frame["id"], None)
            if reply is not None and not reply.done():
                reply.set_result(frame)
            return
        op, sub = frame.get("op"), self._subs.get(frame.get("topic", ""))
        if sub is None:
            return
        if op == "message" and is_newer(frame["position"], sub.position):
            sub.position = frame["position"]
            message = Message(frame["topic"], frame["position"], frame["event"], frame["data"])
            await sub._queue.put(message)  # a full queue holds the socket's reading back
        elif op in ("presence", "presence_diff") and sub.presence is not None:
            sub.presence.apply(frame)
        elif op == "gap" and sub.position not in (None, "0:0"):
            sub.position, sub.recovered = frame["position"], False
            if sub._on_gap:
                sub._on_gap(sub)


def connect_client(url: str, **options: Any) -> Client:
    """``async with tidings.client.connect(url, cookies={...}) as client:`` (see Client)."""
    return Client(url, **options)
