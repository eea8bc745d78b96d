"""Writing a subscriber's queue to one WebSocket: in place when the socket is idle,
from a task when not.

A broadcast hands each subscriber a message by a plain call. For a lone message (its
topic was quiet just before: see :mod:`tidings.server.hub`) and an idle connection
(nothing queued, nothing in flight), the frame is written right there: the ASGI
``send()`` coroutine is stepped in place, and with uvicorn it finishes without
suspending while the socket is writable, so a lone broadcast costs no task wake-up per
subscriber (the idea of Python 3.12's eager tasks).

During a burst, frames are queued instead, and a task per connection drains the queue
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

from tidings.core.protocol import CLOSE_INTERNAL_ERROR, Output
from tidings.core.queue import Queue
from tidings.types import Event, Send

logger = logging.getLogger("tidings.writer")

Render = Callable[[Output], "str | None"]  # an item's text frame; None: nothing to send


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
    """A subscriber's outlet on a WebSocket (:class:`~tidings.server.subscriber.Outlet`)."""

    __slots__ = ("_close_sent", "_closing", "_queue", "_render", "_send", "_task", "frames", "gone")

    def __init__(self, send: Send, render: Render, *, frames: bool = False) -> None:
        """``render`` makes an output's text; ``frames``: live messages are queued as
        their WebSocket frame already (``/realtime/ws``), not rendered one by one."""
        self._send = send
        self._render = render
        self.frames = frames
        self._queue: Queue[Output | str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: tuple[int, str] | None = None
        self._close_sent = False
        self.gone = False  # the client went away: a send failed

    def attach(self, queue: Queue[Output | str]) -> None:
        self._queue = queue

    def write_now(self, item: Output | str) -> bool:
        """Write ``item`` in place if the socket is idle (``False``: queue it instead)."""
        if self._task is not None:
            return False
        if not self.gone:
            text = item if type(item) is str else self._render(item)  # type: ignore[arg-type]
            if text is not None:
                self._send_now({"type": "websocket.send", "text": text})
        return True

    def wake(self) -> None:
        """Items were queued: drain them from a task (one per connection, while needed)."""
        if self._task is None and not self.gone:
            self._task = asyncio.get_running_loop().create_task(self._drain(None))

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then a close frame."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        if self._task is None and not self.gone:
            self._close_sent = True
            self._send_now({"type": "websocket.close", "code": code, "reason": reason})

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _send_now(self, event: Event) -> None:
        coro = self._send(event)
        try:
            pending = coro.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return  # written, no waiting
        except OSError:
            self.gone = True  # uvicorn's ClientDisconnected
            return
        except Exception:
            self._failed()
            self._task = asyncio.get_running_loop().create_task(self._close_failed())
            return
        # It has to wait (the peer reads slowly): a task finishes it, then drains the queue.
        resume = _Resume(coro, pending)  # type: ignore[arg-type]
        self._task = asyncio.get_running_loop().create_task(self._drain(resume))

    async def _drain(self, first: _Resume | None) -> None:
        send, render, queue = self._send, self._render, self._queue
        try:
            if first is not None:
                await first
            while queue is not None and (item := queue.pop()) is not None:
                text = item if type(item) is str else render(item)  # type: ignore[arg-type]
                if text is not None:
                    await send({"type": "websocket.send", "text": text})
            if self._closing is not None and not self._close_sent:
                self._close_sent = True
                code, reason = self._closing
                await send({"type": "websocket.close", "code": code, "reason": reason})
        except OSError:
            self.gone = True
        except Exception:
            self._failed()
            await self._close_failed()
        finally:
            self._task = None

    def _failed(self) -> None:
        """A send raised (not a disconnect): nothing more is written, and the socket is
        closed with 1011 so the client reconnects instead of waiting on a dead one."""
        logger.exception("writing to the socket failed; closing it with 1011")
        self.gone = True
        self._close_sent = True

    async def _close_failed(self) -> None:
        try:
            await self._send({"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR})
        except Exception:
            pass  # it is going anyway
        finally:
            self._task = None
