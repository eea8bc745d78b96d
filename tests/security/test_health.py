"""Issue #13, item 11: health sees a broker that stopped answering.

A frozen Redis (SIGSTOP) keeps its sockets open: the pub/sub connection only gives up
after two keepalive periods (20 s), and health used to stay 200 all that time while
every publish failed. The Redis broker now PINGs on a connection of its own every
``health_interval`` (1 s); two unanswered make ``/realtime/health`` 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import APP, server_env
from tests.redis_server import RedisServer, redis_server
from tidings.testing import live_server


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as r:
        yield r


async def health_becomes(http: httpx.AsyncClient, status: int, timeout: float) -> float:
    """Poll ``/realtime/health`` until it answers ``status``; the seconds it took."""
    start = time.monotonic()
    while (r := await http.get("/realtime/health")).status_code != status:
        assert time.monotonic() - start < timeout, f"still {r.status_code} {r.text}"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def test_health_is_503_within_seconds_of_a_frozen_redis(redis: RedisServer):
    with live_server(APP, env=server_env({"BROKER": redis.url + "?publish_timeout=1"})) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            await health_becomes(http, 200, 10)
            redis.pause()
            try:
                # a PING every second, unhealthy after two unanswered (the pub/sub
                # connection alone took 20 s); the bound leaves room for a loaded machine
                await health_becomes(http, 503, 6)
                assert (await http.get("/realtime/health")).json() == {"ok": False}
                published = await http.post(
                    "/realtime/publish", json={"topic": "test.frozen", "data": 1}
                )
                assert published.status_code == 503, published.text
            finally:
                redis.resume()
            await health_becomes(http, 200, 10)
            published = await http.post(
                "/realtime/publish", json={"topic": "test.frozen", "data": 2}
            )
            assert published.status_code == 200, published.text
