"""Where a subscriber's queue goes: an :class:`Outlet`.

The WebSocket :class:`~tidings.server.writer.Writer` is one; :class:`Mailbox` is the
other, for a subscriber behind an HTTP request (SSE, long-poll, a held view), whose
task waits on it until something is queued.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from tidings.core.protocol import Output
from tidings.core.queue import Queue


class Outlet(Protocol):
    """Where a subscriber's queue goes (centrifuge's ``Transport``)."""

    gone: bool  # the client is gone: nothing more can be written
    frames: bool  # it writes live messages as their WebSocket frame: queue that text

    def attach(self, queue: Queue[Output | str]) -> None: ...
    def write_now(self, item: Output | str) -> bool:
        """Write ``item`` at once if that costs nothing now; ``False``: queue it."""

    def wake(self) -> None:
        """Something was queued."""

    def close(self, code: int, reason: str) -> None:
        """The subscriber is closing (after what is queued)."""


class Mailbox:
    """The outlet of a subscriber behind an HTTP request: the request's task waits."""

    __slots__ = ("_waiter",)
    gone = False
    frames = False

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def attach(self, queue: Queue[Output | str]) -> None:
        pass

    def write_now(self, item: Output | str) -> bool:
        return False

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def close(self, code: int, reason: str) -> None:
        self.wake()

    async def wait(self, timeout: float | None) -> bool:
        """Until :meth:`wake`; ``False`` after ``timeout`` seconds."""
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return True
