"""The subscriber behind one HTTP request: an SSE stream, a long-poll, or a view's hold.

It joins its topics without a gap (what came after ``since``, then live, no message
twice), queues what arrives up to ``QUEUE_SIZE`` messages, and lets the request wait
for it. When the queue overflows, it stops listening and says so (:attr:`overflowed`);
the client resumes from its last position. Always :meth:`close` it (``async with``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from tidings.brokers import HistoryResult
from tidings.core.messages import Message, Position
from tidings.core.queue import Queue
from tidings.joins import Joins
from tidings.server.node import Node


class Listener:
    def __init__(self, node: Node, topics: Iterable[str], user: Any = None) -> None:
        self.node = node
        self.user = user
        self.topics = list(dict.fromkeys(topics))
        self.results: dict[str, HistoryResult] = {}
        self.overflowed = False
        self.closing: tuple[int, str] | None = None  # set when the server shuts down
        self._queue: Queue[Message] = Queue(node.settings.queue_size)
        self._joins = Joins()
        self._joined: list[str] = []
        self._wakeup: asyncio.Future[None] | None = None
        self.presence_frames: list[str] = []  # presence state/diff frames, for SSE

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def join(self, since: dict[str, Position | None] | None = None) -> None:
        """Subscribe every topic; queue the replay after ``since[topic]`` first."""
        since = since or {}
        self.node.listeners.add(self)
        for topic in self.topics:
            result, messages = await self._joins.join(self.node, topic, self, since.get(topic))
            self._joined.append(topic)
            self.results[topic] = result
            messages = [m for m in messages if self._may_see(m)]
            if messages and not self.overflowed:
                self._queue.replay(messages)
                self._wake()

    def deliver(self, message: Message) -> None:
        if self._joins.busy() and not self._joins.admit(message):
            return
        if self._may_see(message):
            self._add(message)

    def _may_see(self, message: Message) -> bool:
        """A model feed may hide some rows from some users (``ModelFeed.visible``)."""
        audience = message.audience
        return audience is None or bool(audience.visible(self.user, message.data.get("data")))

    def presence_frame(self, topic: str, frame: str) -> None:
        """A presence frame of a watched topic (the tracker calls this)."""
        if self.overflowed:
            return
        if len(self.presence_frames) >= self.node.settings.queue_size:
            self.stop()  # as slow as that: the client reconnects and gets the state anew
            return
        self.presence_frames.append(frame)
        self._wake()

    def stop(self, code: int | None = None, reason: str = "") -> None:
        """Make :meth:`wait` return now, for good: the client went away, or (with a close
        ``code``) the server is shutting down."""
        self.overflowed = True
        if code is not None:
            self.closing = (code, reason)
        self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    def _add(self, message: Message) -> None:
        if self.overflowed:
            return
        if not self._queue.put(message, message.key):
            self.overflowed = True
            self._queue.clear()
            for topic in self._joined:
                self.node.unsubscribe_now(topic, self)
            self._joined.clear()
        self._wake()

    async def wait(self, timeout: float | None) -> bool:
        """Wait until a message is queued (or the listener overflowed); ``False`` on timeout."""
        if self._queue or self.overflowed or self.presence_frames:
            return True
        self._wakeup = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._wakeup), timeout)
        except TimeoutError:
            return False
        finally:
            self._wakeup = None
        return True

    def take(self) -> list[Message]:
        """Everything queued, oldest first."""
        return self._queue.pop_all()

    def take_one(self) -> Message | None:
        return self._queue.pop()

    async def close(self) -> None:
        self.node.listeners.discard(self)
        joined, self._joined = self._joined, []
        for topic in joined:
            await self.node.unsubscribe(topic, self)
