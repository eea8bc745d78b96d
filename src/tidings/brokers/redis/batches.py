"""Auto-pipelining: publishes made at the same time in one process go to Redis together.

Every publish is a script call (``lua/publish.lua``), and one at a time a process is
bound by round trips: measured on loopback, ~2,400 ``apublish()``/s from one task and
~6,000/s from 64 tasks over 8 connections, where Redis itself ran each call in ~50 µs.
So publishes queue, and one call of the script publishes a whole batch, in the order
they were made. Concurrency then pays: while a batch is on its way, the next one fills.

- **asyncio**: a publish joins the loop's queue, and
  :class:`~tidings.brokers.redis.pipeline.AsyncPipeline` writes its batches on one
  connection, several in flight. :class:`AsyncBatches` (one batch at a time on the
  pool) batches the broker's history reads.
- **threads** (:class:`SyncBatches`): the first thread to find nobody sending sends
  the queue; threads that publish meanwhile wait, and when the batch returns the next
  waiting thread sends what queued up behind it.

One batch at a time for threads, batches in flight on one connection for a loop, so a
topic's messages keep the order their publishes were made in. A batch has one receipt:
a retry after a broken connection returns what the first attempt published instead of
publishing again. Each message keeps its own deadline, checked by Redis, and its own
answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

MAX_MESSAGES = 256  # per batch: Redis runs a batch alone, ~10 ms at this size
MAX_BYTES = 1 << 20  # of data per batch, past the first message

Run = Callable[["list[Pending]"], None]
ARun = Callable[["list[Pending]"], Awaitable[None]]


class Pending:
    """One publish waiting for its batch: the script's keys and arguments for it, and
    its answer once the batch returns (a line of the script's reply, or an error)."""

    __slots__ = ("args", "done", "error", "keys", "reply", "size")

    def __init__(self, keys: tuple[str, str], args: tuple[Any, ...], size: int) -> None:
        self.keys = keys
        self.args = args
        self.size = size
        # A publish's: (Redis ms, "<epoch> <offset>" | "late"); a history read's: its reply.
        self.reply: Any = None
        self.error: Exception | None = None
        self.done: Any = None  # the caller's future (asyncio) or held lock (threads)

    def fail(self, error: BaseException) -> None:
        if self.reply is None and self.error is None:
            self.error = error if isinstance(error, Exception) else RuntimeError(repr(error))


def take(queue: list[Pending], limit: int = MAX_MESSAGES) -> list[Pending]:
    """Remove and return the next batch (at most ``limit`` publishes) from ``queue``."""
    n, size = 0, 0
    for pending in queue[: min(limit, MAX_MESSAGES)]:
        size += pending.size
        if size > MAX_BYTES and n:
            break
        n += 1
    batch = queue[:n]
    del queue[:n]
    return batch


def settle(batch: list[Pending], reply: str) -> None:
    """Give each publish of ``batch`` its line of the script's ``reply``."""
    lines = reply.split("\n")
    now = int(lines[0])
    for pending, line in zip(batch, lines[1:], strict=True):
        pending.reply = (now, line)


class AsyncBatches:
    """The queue of the running loop's publishes (or history reads, which the broker
    batches the same way); ``run`` sends one batch and settles it."""

    def __init__(self, run: ARun) -> None:
        self._run = run
        self._queue: list[Pending] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, pending: Pending) -> Pending:
        loop = asyncio.get_running_loop()
        pending.done = loop.create_future()
        self._queue.append(pending)
        if self._sender is None:
            self._sender = loop.create_task(self._send())
        await pending.done  # a cancelled caller leaves its publish in the queue
        return pending

    async def _send(self) -> None:
        batch: list[Pending] = []
        try:
            while self._queue:
                batch = take(self._queue)
                try:
                    await self._run(batch)
                except Exception as e:  # the whole batch failed: each caller is told
                    for pending in batch:
                        pending.fail(e)
                _wake(batch)
        finally:
            self._sender = None
            left = batch + self._queue  # only when cancelled: the broker closed
            self._queue = []
            for pending in left:
                pending.fail(RuntimeError("the broker closed before this was published"))
            _wake(left)


def _wake(batch: list[Pending]) -> None:
    for pending in batch:
        if not pending.done.done():
            pending.done.set_result(None)


class SyncBatches:
    """The queue of publishes made from threads; ``run`` sends one batch and settles it."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._queue: list[Pending] = []
        self._sending = False

    def publish(self, pending: Pending) -> Pending:
        # A held lock is the cheapest one-shot signal: release() wakes the acquire().
        pending.done = threading.Lock()
        pending.done.acquire()
        with self._lock:
            self._queue.append(pending)
            send = not self._sending
            self._sending = True
        if not send:
            pending.done.acquire()
            # Woken with no answer: the thread before handed the sending over.
            send = pending.reply is None and pending.error is None
        if send:
            with self._lock:
                batch = take(self._queue)
            try:
                self._run(batch)
            except BaseException as e:
                for p in batch:
                    p.fail(e)
                if not isinstance(e, Exception):
                    raise
            finally:
                with self._lock:
                    for p in batch:
                        if p is not pending:
                            p.done.release()
                    if self._queue:  # the next thread sends what queued meanwhile
                        self._queue[0].done.release()
                    else:
                        self._sending = False
        return pending
