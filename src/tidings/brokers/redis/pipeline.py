"""Pipelining: several batches of a loop's publishes in flight on one connection.

:mod:`~tidings.brokers.redis.batches` made publishes made at the same time one script
call, but one call at a time: the publishers of a batch were all waiting for its reply,
so this process's work (arguments, futures, wake-ups) and Redis's work (the script) took
turns instead of overlapping. Here a loop's publishes go out on one connection of their
own, and a batch is written as soon as it is taken, up to :data:`DEPTH` batches before
the first reply; while Redis runs one, the publishers woken by the reply before queue
the next. When nothing is in flight, the queue is split in two, so that two batches are
in flight from then on.

**Order.** Redis runs the commands of one connection in the order they were written,
so batches run in the order they were taken, as publishes were made. A broken
connection (or a timeout) loses the replies in flight, not the order: every batch in
flight is written again, in order, on a new connection, with its receipt, so a batch
that did run returns what it published instead of publishing again; each retries while
its deadline allows (``retries`` times at most), then fails alone.

**The script** is loaded (``SCRIPT LOAD``) on each new connection and called with
``EVALSHA``. A ``NOSCRIPT`` reply (``SCRIPT FLUSH`` while connected) is handled as a
broken connection: loaded again, and every batch in flight written again. Were another
client to load the script within the microseconds between two of this connection's
batches reaching Redis, the later could run before the earlier: that is the one case
where a flush can reorder.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.backoff import AbstractBackoff

from tidings.brokers.redis.batches import Pending, take
from tidings.exceptions import BrokerError

pack_command: Callable[[tuple[Any, ...]], bytes] | None = None
try:  # the asyncio client packs in Python otherwise (see packing.py)
    import hiredis

    pack_command = hiredis.pack_command
except ImportError:  # pragma: no cover
    pass

DEPTH = 4  # batches written before the first reply is read
SPLIT = 8  # the smallest half when the queue is split (see the module docstring)
RETRY = (redis.ConnectionError, redis.TimeoutError)

Build = Callable[[list[Pending]], tuple[list[str], list[Any]]]
Settle = Callable[[list[Pending], str], None]


class _Flight:
    """A batch taken from the queue, with its receipt: written again, unchanged, after a
    broken connection."""

    __slots__ = ("attempts", "batch", "give_up", "words")

    def __init__(self, batch: list[Pending], words: tuple[Any, ...], give_up: float) -> None:
        self.batch = batch
        self.words = words  # EVALSHA's arguments after the sha
        self.give_up = give_up
        self.attempts = 0


class Flights:
    """The pipeline's bookkeeping, none of it I/O: the queue, taking batches from it,
    answering them, and deciding what a failure ends.

    ``build`` makes a batch's keys and arguments (with its receipt), ``settle`` hands the
    script's reply out to the batch."""

    def __init__(
        self,
        source: str,
        build: Build,
        settle: Settle,
        backoff: AbstractBackoff,
        retries: int,
        publish_timeout: float,
        replicas: int = 0,
        wait_ms: int = 1000,
    ) -> None:
        self._source = source
        self._wait = ("WAIT", replicas, wait_ms) if replicas > 0 else None
        self._build = build
        self._settle = settle
        self._backoff = backoff
        self._retries = retries
        self._publish_timeout = publish_timeout
        self._queue: list[Pending] = []
        self._sha = ""

    def _take(self, flights: deque[_Flight]) -> _Flight:
        n = len(self._queue)
        limit = n if flights or n < 2 * SPLIT else (n + 1) // 2
        batch = take(self._queue, limit)
        keys, args = self._build(batch)
        return _Flight(batch, (len(keys), *keys, *args), time.monotonic() + self._publish_timeout)

    def _packed(self, conn: Any, flight: _Flight) -> list[bytes]:
        command = packed(conn, ("EVALSHA", self._sha, *flight.words))
        return command if self._wait is None else command + packed(conn, self._wait)

    async def _reply(self, conn: Any) -> Any:
        """A flight's reply: the script's (an error reply: that batch ran nothing), then,
        with ``replicas``, WAIT's: fewer replicas than asked fails the batch."""
        try:
            reply: Any = await conn.read_response()
        except redis.exceptions.NoScriptError:
            raise
        except redis.ResponseError as e:
            reply = e
        if self._wait is not None:
            acked = await conn.read_response()
            if acked < self._wait[1] and not isinstance(reply, Exception):
                reply = BrokerError(unreplicated(acked, self._wait[1], self._wait[2] / 1000))
        return reply

    def _answer(self, flight: _Flight, reply: Any) -> None:
        """Settle ``flight`` with ``reply`` (an error reply: that batch ran nothing)."""
        try:
            if isinstance(reply, Exception):
                raise reply
            self._settle(flight.batch, reply)
        except Exception as e:
            for pending in flight.batch:
                pending.fail(e)
        wake(flight.batch)

    def _expire(self, flights: deque[_Flight], error: Exception) -> float:
        """The connection failed with ``flights`` in flight: fail those out of time or
        retries, keep the rest (in order) for the next connection; return the pause."""
        attempts = 0
        now = time.monotonic()
        for flight in list(flights):
            flight.attempts += 1
            pause = self._backoff.compute(flight.attempts)
            if flight.attempts > self._retries or now + pause > flight.give_up:
                flights.remove(flight)
                for pending in flight.batch:
                    pending.fail(error)
                wake(flight.batch)
            else:
                attempts = max(attempts, flight.attempts)
        return self._backoff.compute(attempts) if flights and attempts else 0.0

    def _abandon(self, flights: deque[_Flight], why: BaseException, queued: bool = True) -> None:
        """Fail what is in flight, and what is queued (the broker closed, or a bug)."""
        left = [p for f in flights for p in f.batch]
        flights.clear()
        if queued:
            left += self._queue
            self._queue = []
        for pending in left:
            pending.fail(why)
        wake(left)


CLOSED = "the broker closed before this was published"


class AsyncPipeline(Flights):
    """The running loop's queue of publishes and the connection that carries them."""

    def __init__(self, pool: aioredis.ConnectionPool, *args: Any) -> None:
        super().__init__(*args)
        # One connection of its own, outside the pool's count: connected again as needed.
        self._conn = pool.connection_class(**pool.connection_kwargs)
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, pending: Pending) -> Pending:
        """Publish ``pending`` with the next batch; return it answered."""
        pending.done = asyncio.get_running_loop().create_future()
        self._queue.append(pending)
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send())
        await pending.done  # a cancelled caller leaves its publish in the queue
        return pending

    async def close(self) -> None:
        await self._conn.disconnect()

    async def _send(self) -> None:
        flights: deque[_Flight] = deque()
        written = 0  # flights at the front of ``flights`` written on this connection
        why: BaseException = RuntimeError(CLOSED)
        try:
            while self._queue or flights:
                try:
                    while self._queue and len(flights) < DEPTH:
                        flights.append(self._take(flights))
                    conn = self._conn
                    if not conn.is_connected:
                        written = 0
                        if not await self._connect(flights):
                            continue
                    while written < len(flights):
                        command = self._packed(conn, flights[written])
                        await conn.send_packed_command(command, check_health=False)
                        written += 1
                    reply = await self._reply(conn)
                except (*RETRY, redis.exceptions.NoScriptError) as e:
                    written = 0
                    await self._conn.disconnect(nowait=True)
                    await asyncio.sleep(self._expire(flights, e))
                    continue
                written -= 1
                self._answer(flights.popleft(), reply)
                await asyncio.sleep(0)  # the publishers just woken queue their next ones
        except Exception as e:  # not Redis's failure: this process's; told to each caller
            why = e
            raise
        finally:
            self._sender = None
            self._abandon(flights, why)

    async def _connect(self, flights: deque[_Flight]) -> bool:
        """Connect (again) and load the script. Redis refusing the script (an ACL, say)
        fails the batches taken, as no retry can help: then False."""
        conn = self._conn
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command("SCRIPT", "LOAD", self._source, check_health=False)
            self._sha = await conn.read_response()
            return True
        except redis.ResponseError as e:
            await conn.disconnect(nowait=True)
            self._abandon(flights, e, queued=False)
            return False
        except BaseException:
            await conn.disconnect(nowait=True)
            raise


def unreplicated(acked: int, asked: int, seconds: float) -> str:
    return (
        f"only {acked} of {asked} replica(s) confirmed it within {seconds}s: it is on the "
        "master, and may be lost if the master fails (or it was a master no longer)"
    )


def packed(conn: Any, words: tuple[Any, ...]) -> list[bytes]:
    """``words`` as one command for ``conn``: packed by hiredis in one call (redis-py
    first checks each argument's type in Python)."""
    return [pack_command(words)] if pack_command is not None else conn.pack_command(*words)


def wake(batch: list[Pending]) -> None:
    """Tell each caller of ``batch`` its publish is answered (or failed)."""
    for pending in batch:
        if not pending.done.done():
            pending.done.set_result(None)
