"""Writing frames to one WebSocket: at once when the socket can take them, queued when not.

A broadcast hands each subscriber a frame by a plain call. For a lone message (its
topic was quiet just before: see ``Node.tag``) and an idle connection (nothing queued,
nothing in flight), the frame is written right there: the ASGI ``send()`` coroutine is
stepped in place, and with uvicorn it finishes without suspending while the socket is
writable, so a lone broadcast costs no task wake-up per subscriber (the idea of
Python 3.12's eager tasks).

During a burst, frames are queued instead, and a task per connection drains its queue
on the next loop iteration: by then more frames have come, and uvloop writes all of a
transport's frames of one iteration in one system call. Measured with ``make bench``
(N=1,000, one topic, same run): always in place, ~65k deliveries/s in bursts; always
queued, ~200k/s but lone-broadcast p99 2-3x worse; the mix keeps both. When ``send()``
has to wait (the peer reads slowly), the task finishes that send first. An idle
connection holds no writer task at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from tidings.core.queue import Queue
from tidings.types import Message, Send

logger = logging.getLogger("tidings.writer")


class _Resume:
    """Finish, inside a task, a coroutine that was started in place and had to wait."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                value = yield pending  # the task waits on what the coroutine waits on
            except BaseException as e:  # cancellation: hand it to the coroutine
                try:
                    pending = coro.throw(e)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = coro.send(value)
            except StopIteration as stop:
                return stop.value


class Writer:
    __slots__ = (
        "_close_sent",
        "_on_overflow",
        "_send",
        "_task",
        "closing",
        "gone",
        "queue",
    )

    def __init__(self, send: Send, limit: int, on_overflow: Callable[[], None]) -> None:
        self._send = send
        self.queue: Queue[str] = Queue(limit)
        self._on_overflow = on_overflow
        self._task: asyncio.Task[None] | None = None
        self.closing: tuple[int, str] | None = None
        self._close_sent = False
        self.gone = False  # the client went away: a send failed

    def write(self, frame: str, key: str | None = None, eager: bool = True) -> None:
        """Send ``frame`` now if ``eager`` and the socket is idle, else queue it
        (``key``: coalescing)."""
        if self.closing is not None or self.gone:
            return
        if eager and self._task is None and not self.queue:
            self._send_now({"type": "websocket.send", "text": frame})
            return
        if not self.queue.put(frame, key):
            self._on_overflow()
        elif self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(None))

    def replay(self, frames: list[str]) -> None:
        """Queue a replay from history (it may exceed the queue's limit; see Queue)."""
        if frames and self.closing is None and not self.gone:
            self.queue.replay(frames)
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._drain(None))

    def close(self, code: int, reason: str, *, drop: bool = False) -> None:
        """Send what is queued (or ``drop`` it), then a close frame."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        if drop:
            self.queue.clear()
        if self._task is None and not self.gone:
            self._close_sent = True
            self._send_now({"type": "websocket.close", "code": code, "reason": reason})

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _send_now(self, event: Message) -> None:
        coro = self._send(event)
        try:
            pending = coro.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return  # written, no waiting
        except OSError:
            self.gone = True  # uvicorn's ClientDisconnected
            return
        except Exception:
            logger.exception("writing to the socket failed")
            self.gone = True
            return
        # It has to wait (the peer reads slowly): a task finishes it, then drains the queue.
        resume = _Resume(coro, pending)  # type: ignore[arg-type]
        self._task = asyncio.get_running_loop().create_task(self._drain(resume))

    async def _drain(self, first: _Resume | None) -> None:
        send, queue = self._send, self.queue
        try:
            if first is not None:
                await first
            while (frame := queue.pop()) is not None:
                await send({"type": "websocket.send", "text": frame})
            if self.closing is not None and not self._close_sent:
                self._close_sent = True
                code, reason = self.closing
                await send({"type": "websocket.close", "code": code, "reason": reason})
        except OSError:
            self.gone = True
        finally:
            self._task = None
