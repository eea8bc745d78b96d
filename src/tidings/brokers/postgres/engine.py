"""The broker's own thread: an event loop where all of its database work runs.

``publish()`` may be called from any thread, with or without an event loop, and
``apublish()`` from whichever loop the caller runs; psycopg's asyncio connections
belong to one loop. So every query of the broker (publishes, reads, presence, the
listener, the sweep) runs on one loop of the broker's own, in a daemon thread started
on first use: callers hand it coroutines (:meth:`Engine.call` from a thread,
:meth:`Engine.acall` from another loop) and wait for the answer. Deadlines can then
be kept from any thread: a sync call that waits on a frozen server is given up on
when its time is over, as an async one is. Publishes from threads and from tasks share
one queue (:mod:`~tidings.brokers.postgres.batches`), so they go out in batches too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Engine:
    """An event loop in a thread of its own; :meth:`stop` ends it (the next call
    starts another)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (started on first use)."""
        with self._lock:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.new_event_loop()
                ready = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(loop, ready), name=self._name, daemon=True
                )
                self._thread.start()
                ready.wait()
            return loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()
        loop.close()

    def running(self) -> bool:
        """Was the loop started (and not stopped since)?"""
        return self._loop is not None

    def on_it(self) -> bool:
        """Is the caller running on the engine's thread?"""
        return threading.current_thread() is self._thread

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the engine and wait for its result, from another thread."""
        if self.on_it():
            coro.close()
            raise RuntimeError("a blocking call on the broker's own thread")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError from None

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the engine, from a coroutine of another loop (or of the
        engine's own, which then just awaits it)."""
        if self.on_it():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop()))

    def stop(self) -> None:
        """Stop the loop once what was scheduled on it ran; wait for the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(10)


async def every(interval: float, what: str, step: Callable[[], Awaitable[Any]]) -> None:
    """``await step()`` every ``interval`` seconds until cancelled. A failure is logged
    once (as is the first success after it) and the next round tries again: a
    broker's background task never stops by itself."""
    logger = logging.getLogger("tidings.brokers.postgres")
    failing = False
    while True:
        await asyncio.sleep(interval)
        try:
            await step()
        except Exception as e:
            if not failing:
                logger.warning("%s failed (retrying every %ss): %s", what, interval, e)
            failing = True
        else:
            if failing:
                logger.warning("%s works again", what)
            failing = False
