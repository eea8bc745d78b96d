"""Is Redis answering? A PING every ``health_interval`` seconds, on a connection of its own.

The pub/sub connection alone cannot tell: a frozen Redis (SIGSTOP, a stalled host)
keeps its sockets open, and the listener only gives up after two ``keepalive``
periods of silence (20 s by default), which must stay long so that a slow moment does
not make every process re-subscribe every topic. So health asks Redis itself: a PING
that must answer within ``health_interval``; Redis that has not answered one for two
intervals is not healthy (:meth:`Probe.answering`). It costs Redis one PING per second
per process.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from tidings.brokers.redis.pools import async_pool


class Probe:
    """PINGs Redis until cancelled (:meth:`run`); :meth:`answering` says if it answers."""

    def __init__(self, redis_url: str, pool_kwargs: dict[str, Any], interval: float) -> None:
        self._redis_url = redis_url
        self._pool_kwargs = {
            **pool_kwargs,
            "socket_timeout": interval,
            "socket_connect_timeout": interval,
            "max_connections": 1,
        }
        self.interval = interval
        self.answered: float | None = None  # time.monotonic() of the last PONG
        self.last_error: str | None = None

    def answering(self) -> bool:
        """Did Redis answer a PING within the last two intervals?"""
        answered = self.answered
        return answered is not None and time.monotonic() - answered <= 2 * self.interval

    def health(self) -> dict[str, Any]:
        answered = self.answered
        ago = None if answered is None else round(time.monotonic() - answered, 3)
        return {"answering": self.answering(), "answered_ago": ago, "probe_error": self.last_error}

    async def run(self) -> None:
        pool = async_pool(self._redis_url, retry=AsyncRetry(NoBackoff(), 0), **self._pool_kwargs)
        client = aioredis.Redis(connection_pool=pool)
        try:
            while True:
                sent = time.monotonic()
                try:
                    await client.ping()
                except (redis.RedisError, OSError) as e:
                    self.last_error = f"{type(e).__name__}: {e}"
                    await pool.disconnect()  # a reply may still come on that socket
                else:
                    self.answered = time.monotonic()
                await asyncio.sleep(max(0.0, sent + self.interval - time.monotonic()))
        finally:
            await client.aclose(close_connection_pool=True)
