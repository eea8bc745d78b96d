"""Writing a subscriber's queue to one WebSocket: the first frame of a loop turn in
place, the rest of that turn's frames together at the next turn.

A broadcast hands each subscriber a message by a plain call. A connection that has
written nothing in this turn of the event loop (and has nothing queued, nothing in
flight) writes the frame right there: the text goes to the socket without a task or a
queue, as raw ``websockets``' ``broadcast()`` does. Any further frame for it in the same
turn is queued, and one callback per turn (:class:`Flusher`) writes every such
connection's queue at the next turn, where uvloop sends each connection's frames of
one turn in one system call. So messages published one per loop turn (an
``apublish()`` loop), in bursts (frames read in one go, handed over from threads) or
alone all cost one write per frame, and a burst one system call per connection.
Measured with ``make bench``, docs/performance.md.

When a send has to wait (the peer reads slowly), a task finishes that send and drains
the queue. An idle connection holds no task and no queue.

The text is written through ``tidings.serve``'s synchronous send (the scope extension
:data:`~tidings.types.SEND_TEXT`) when the server offers it, else by stepping the ASGI
``send()`` coroutine in place: with uvicorn it finishes without suspending while the
socket is writable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
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


class Flusher:
    """Turns of the event loop, and the writers with something queued in this one.

    ``turn`` counts the loop's turns in which something was written: a writer that
    wrote in place in the current turn queues what else comes for it, and everything
    queued in a turn (one message or a burst of them, published from the loop or handed
    over from threads) is written at the next turn by one callback, connection after
    connection, with no task per connection."""

    __slots__ = ("_loop", "_ticking", "_writers", "turn")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._writers: list[Writer] = []
        self._ticking = False  # the callback that ends this turn is scheduled
        self.turn = 0

    def mark(self) -> int:
        """Something was written in this turn: the turn it is (it ends at the next one)."""
        if not self._ticking:
            self._ticking = True
            self._loop.call_soon(self._tick)
        return self.turn

    def add(self, writer: Writer) -> None:
        """``writer`` queued something in this turn: flush it at the next."""
        self.mark()
        self._writers.append(writer)

    def _tick(self) -> None:
        self.turn += 1
        self._ticking = False
        writers, self._writers = self._writers, []
        for writer in writers:
            try:
                writer.flush()
            except Exception:
                logger.exception("flushing %r failed", writer)


_flushers: dict[asyncio.AbstractEventLoop, Flusher] = {}


def _flusher() -> Flusher:
    loop = asyncio.get_running_loop()
    flusher = _flushers.get(loop)
    if flusher is None:
        for old in [old for old in _flushers if old.is_closed()]:
            del _flushers[old]
        flusher = _flushers[loop] = Flusher(loop)
    return flusher


class Writer:
    """A subscriber's outlet on a WebSocket (:class:`~tidings.server.subscriber.Outlet`)."""

    __slots__ = (
        "_close_sent",
        "_closing",
        "_due",
        "_flusher",
        "_queue",
        "_render",
        "_send",
        "_send_text",
        "_task",
        "_turn",
        "frames",
        "gone",
    )

    def __init__(
        self,
        send: Send,
        render: Render,
        *,
        frames: bool = False,
        send_text: Callable[[bytes], bool] | None = None,
    ) -> None:
        """``render`` makes an output's text; ``frames``: live messages are queued as
        their WebSocket frame already (``/realtime/ws``), not rendered one by one.
        ``send_text`` writes a text frame now if it can (``tidings.serve``'s scope
        extension); else, and without it, ``send`` does."""
        self._send = send
        self._send_text = send_text
        self._render = render
        self.frames = frames
        self._queue: Queue[Output | str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: tuple[int, str] | None = None
        self._close_sent = False
        self._due = False  # it is in the flusher's list for the loop's next turn
        self._flusher = _flusher()
        self._turn = -1  # the last turn it wrote in place
        self.gone = False  # the client went away: a send failed

    def attach(self, queue: Queue[Output | str]) -> None:
        self._queue = queue

    def write_now(self, item: Output | str) -> bool:
        """Write ``item`` in place if the socket has written nothing this turn and is
        idle (``False``: queue it instead, for the next turn)."""
        flusher = self._flusher
        if self._task is not None or self._due or self._turn == flusher.turn:
            return False  # (it wrote in this turn already: what comes waits for the next)
        if not self.gone:
            text = item if type(item) is str else self._render(item)  # type: ignore[arg-type]
            if text is not None:
                self._write(text)
                self._turn = flusher.mark()
        return True

    def _write(self, text: str) -> None:
        send_text = self._send_text
        if send_text is None or not send_text(text.encode()):
            self._send_now({"type": "websocket.send", "text": text})

    def wake(self) -> None:
        """Items were queued: they are written at the loop's next turn (:class:`Flusher`),
        or by the task already finishing a send that had to wait."""
        if self._task is None and not self.gone and not self._due:
            self._due = True
            self._flusher.add(self)

    def flush(self) -> None:
        """The next turn: write what is queued, in place, until a send has to wait (a
        task then finishes it and drains the rest). Having written, it counts as having
        written in this turn, so frames coming later in it are queued too."""
        self._due = False
        queue, render = self._queue, self._render
        wrote = False
        while self._task is None and not self.gone and queue is not None:
            item = queue.pop()
            if item is None:
                if self._closing is not None and not self._close_sent:
                    self._close_sent = True
                    code, reason = self._closing
                    self._send_now({"type": "websocket.close", "code": code, "reason": reason})
                elif wrote:
                    self._turn = self._flusher.mark()
                return
            text = item if type(item) is str else render(item)  # type: ignore[arg-type]
            if text is not None:
                self._write(text)
                wrote = True

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then a close frame."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        if self._task is None and not self.gone and not self._due:
            self._close_sent = True
            self._send_now({"type": "websocket.close", "code": code, "reason": reason})

    def cancel(self) -> None:
        """The connection ended: nothing more is written."""
        self.gone = True
        if self._task is not None:
            self._task.cancel()

    def _send_now(self, event: Event) -> None:
        coro = self._send(event)
        if not hasattr(coro, "send"):  # not a Python coroutine (granian's): a task awaits it
            self._task = asyncio.get_running_loop().create_task(self._drain(coro))
            return
        try:
            pending = coro.send(None)
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

    async def _drain(self, first: Awaitable[Any] | None) -> None:
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
