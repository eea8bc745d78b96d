"""Connections to PostgreSQL, on the engine's loop (:mod:`~tidings.brokers.postgres.engine`).

A small pool: at most ``max_connections`` at once, opened on demand, kept while they
work. Callers beyond that wait their turn in FIFO order (an ``asyncio.Semaphore``).
:meth:`Pool.run` gives a piece of work one connection and a time limit; work that
overruns it is abandoned (cancelled in the background, its connection closed and not
reused), so a frozen server or a half-open socket never holds a caller past its
deadline. A connection that failed is closed, never handed out again.

Each new connection is set up once (autocommit, and the broker's schema made on the
first connection of the process: :mod:`~tidings.brokers.postgres.schema`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
Setup = Callable[[Conn], Awaitable[None]]


async def connect(params: dict[str, Any], timeout: float, setup: Setup | None = None) -> Conn:
    """A new autocommit connection, set up; raises ``psycopg.OperationalError`` (also
    when it takes longer than ``timeout``)."""
    try:
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                **params, autocommit=True, connect_timeout=max(1, round(timeout))
            ),
            timeout + 1,
        )
    except TimeoutError:
        raise psycopg.OperationalError(f"no connection within {timeout}s") from None
    try:
        if setup is not None:
            await setup(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


class Pool:
    """At most ``size`` connections made by ``params()``; see the module docstring."""

    def __init__(
        self, params: Callable[[], dict[str, Any]], size: int, connect_timeout: float,
        setup: Setup,
    ) -> None:  # fmt: skip
        self._params = params
        self._connect_timeout = connect_timeout
        self._setup = setup
        self._idle: list[Conn] = []
        self._slots = asyncio.Semaphore(size)
        self._abandoned: set[asyncio.Task[Any]] = set()

    async def run(self, work: Callable[[Conn], Awaitable[T]], timeout: float) -> T:
        """``await work(conn)`` on a connection of the pool, within ``timeout`` seconds
        (waiting for a free connection included); raises ``TimeoutError`` past it."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except TimeoutError:
            raise TimeoutError("every connection stayed busy") from None
        conn: Conn | None = None
        try:
            conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                left = max(0.1, give_up - loop.time())
                conn = await connect(self._params(), min(self._connect_timeout, left), self._setup)
            task = loop.create_task(_work(work, conn))
            done, _ = await asyncio.wait({task}, timeout=max(0.0, give_up - loop.time()))
            if not done:
                task.cancel()
                self._abandon(task, conn)
                conn = None
                raise TimeoutError(f"no answer within {timeout}s")
            return task.result()
        except BaseException as e:
            if conn is not None and (conn.broken or not isinstance(e, psycopg.Error)
                                     or isinstance(e, psycopg.OperationalError)):  # fmt: skip
                await _close(conn)
                conn = None
            raise
        finally:
            if conn is not None and not conn.closed and not conn.broken:
                self._idle.append(conn)
            self._slots.release()

    def _abandon(self, task: asyncio.Task[Any], conn: Conn) -> None:
        """Let ``task`` end by itself, then close its connection."""
        self._abandoned.add(task)

        def closed(t: asyncio.Task[Any]) -> None:
            self._abandoned.discard(t)
            with contextlib.suppress(Exception):
                conn.pgconn.finish()

        task.add_done_callback(closed)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)
        for task in list(self._abandoned):
            task.cancel()


async def _work(work: Callable[[Conn], Awaitable[T]], conn: Conn) -> T:
    return await work(conn)


async def _close(conn: Conn) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.close(), 2)
    if not conn.closed:
        conn.pgconn.finish()
