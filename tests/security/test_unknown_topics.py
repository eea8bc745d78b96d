"""Issue #13, item 6: reading topics nobody published to must not cost the server memory.

A client may subscribe to (or poll, or stream) any topic a rule lets it read, and
there are endlessly many: each read used to make the broker keep that topic for good
(the memory broker a stream of ~1 KB, Redis a ``meta`` key for 24 h). Now a read of a
topic the broker keeps nothing of stores nothing, and idle topics are freed. Each test
reads unknown topics over every transport of a real server, then counts what its
broker keeps: the memory broker's streams (in the health details staff users see),
Redis's keys.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest

from tests.conftest import APP, server_env
from tests.http_helpers import next_event, sse_events
from tests.redis_server import RedisServer, redis_server
from tidings.testing import Client, LiveServer, live_server

BRIEF = {"test.*": {"size": 10, "ttl": 0.5}}  # history expires at once
READS = 300  # per transport


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as r:
        yield r


def staff_cookies(server: LiveServer) -> dict[str, str]:
    from django.contrib.auth.models import User

    from tests.test_websocket import login

    user, _ = User.objects.get_or_create(username="staff-13", defaults={"is_staff": True})
    user.is_staff = True
    user.set_password("pw-staff-13")
    user.save()
    return login(server, "staff-13", "pw-staff-13")


async def read_unknown_topics(server: LiveServer, prefix: str) -> None:
    """Read ``READS`` topics nobody published to on each transport: long-poll, SSE,
    WebSocket; every read answers, and says the topic is at its start."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:

        async def poll(i: int) -> None:
            r = await http.get("/realtime/poll", params={"topic": f"{prefix}.p{i}", "timeout": 0})
            assert r.status_code == 200, r.text
            assert r.json()["topics"][f"{prefix}.p{i}"]["position"].endswith(":0")

        async def stream(i: int) -> None:
            topic = f"{prefix}.s{i}"
            async with http.stream("GET", "/realtime/sse", params={"topic": topic}) as r:
                assert r.status_code == 200
                opened = await next_event(sse_events(r))
                assert json.loads(opened.data)["topics"][topic]["position"].endswith(":0")

        for batch in range(0, READS, 20):
            await asyncio.gather(*(poll(i) for i in range(batch, batch + 20)))
            await asyncio.gather(*(stream(i) for i in range(batch, batch + 20)))
    for batch in range(0, READS, 30):  # (30 a connection: within its rate limit)
        async with Client(server.ws_url, origin=server.url) as ws:
            for i in range(batch, batch + 30):
                topic = f"{prefix}.w{i}"
                assert (await ws.subscribe(topic))["position"].endswith(":0")
                await ws.request("unsubscribe", topic=topic)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.1)


async def publish(http: httpx.AsyncClient, topic: str) -> None:
    r = await http.post("/realtime/publish", json={"topic": topic, "data": {"n": 1}})
    assert r.status_code == 200, r.text


async def test_reading_unknown_topics_keeps_nothing_in_the_memory_broker(make_server):
    settings = {"BROKER": "memory://?meta_ttl=1", "HISTORY": BRIEF}
    with make_server(settings) as srv:
        cookies = await asyncio.to_thread(staff_cookies, srv)
        async with httpx.AsyncClient(base_url=srv.url, cookies=cookies, timeout=30) as staff:

            async def streams() -> int:
                r = await staff.get("/realtime/health")
                value = r.json()["broker"].get("streams")
                assert isinstance(value, int), r.json()
                return value

            base = await streams()  # (the demo's own topics)
            await read_unknown_topics(srv, "test.nobody")
            assert await streams() == base  # 900 reads: nothing kept
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as anon:
                for i in range(20):
                    await publish(anon, f"test.idle.{i}")
            assert await streams() == base + 20

            async def freed() -> bool:
                return await streams() <= base

            # no subscriber, history expired, untouched for meta_ttl: freed
            await until(freed, 15, "idle topics to be freed")


async def test_reading_unknown_topics_writes_no_key_to_redis(redis: RedisServer):
    prefix = f"t{secrets.token_hex(4)}"
    url = f"{redis.url}?prefix={prefix}&meta_ttl=1"
    with live_server(APP, env=server_env({"BROKER": url, "HISTORY": BRIEF})) as srv:
        with redis.client() as r:

            def keys() -> list[str]:
                return list(r.scan_iter(match=f"{prefix}:*", count=1000))

            await read_unknown_topics(srv, "test.nobody")
            assert keys() == []  # 900 reads: no key
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
                for i in range(5):
                    await publish(http, f"test.idle.{i}")
            written = keys()
            assert len([k for k in written if k.endswith(":meta")]) == 5
            assert all(r.pttl(k) > 0 for k in written)  # every key expires by itself

            async def topics_gone() -> bool:
                return not [k for k in keys() if ":r:" not in k]  # (receipts: seconds)

            await until(topics_gone, 15, "the topics' keys to expire")
