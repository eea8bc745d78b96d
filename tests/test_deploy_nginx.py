"""docs/deploy.md's second shape, as documented: two tidings processes sharing Redis,
behind the nginx configuration the doc shows. WebSocket, SSE, long-poll and a view's
held long-poll all go through nginx."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import APP, server_env
from tests.http_helpers import next_event, sse_events
from tests.nginx_server import nginx
from tests.redis_server import redis_server
from tidings.testing import Client, live_server


@pytest.fixture(scope="module")
def stack() -> Iterator[str]:
    with (
        redis_server() as redis,
        live_server(APP, env=server_env({"BROKER": redis.url})) as one,
        live_server(APP, env=server_env({"BROKER": redis.url})) as two,
        nginx([one.port, two.port]) as url,
    ):
        yield url


def ws(url: str) -> Client:
    return Client(url.replace("http://", "ws://") + "/realtime/ws", origin=url)


async def test_websockets_through_nginx_reach_each_other_across_processes(stack):
    clients = [ws(stack) for _ in range(4)]  # round robin: both processes get some
    for c in clients:
        await c.__aenter__()
    try:
        for c in clients:
            await c.subscribe("test.nginx")
        await clients[0].publish("test.nginx", "through nginx")
        for c in clients:
            assert (await c.next_message())["data"] == "through nginx"
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)


async def test_sse_through_nginx_is_not_buffered(stack):
    async with (
        httpx.AsyncClient(base_url=stack, timeout=10) as http,
        http.stream("GET", "/realtime/sse", params={"topic": "test.nginx-sse"}) as r,
        ws(stack) as pub,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
        await next_event(events)
        start = time.monotonic()
        await pub.publish("test.nginx-sse", {"small": 1})  # far less than a buffer's worth
        e = await next_event(events, timeout=5)
        assert json.loads(e.data) == {"small": 1}
        assert time.monotonic() - start < 2


async def test_long_poll_and_a_held_view_through_nginx(stack):
    async with httpx.AsyncClient(base_url=stack, timeout=30) as http, ws(stack) as pub:
        first = (
            await http.get("/realtime/poll", params={"topic": "test.nginx-lp", "timeout": 0})
        ).json()
        held = asyncio.create_task(
            http.get(
                "/realtime/poll",
                params={"topic": "test.nginx-lp", "since": first["since"], "timeout": 20},
            )
        )
        await asyncio.sleep(0.5)
        await pub.publish("test.nginx-lp", "released")
        assert [m["data"] for m in (await held).json()["messages"]] == ["released"]

        headline = (await http.post("/headlines/")).json()
        url = f"/headlines/{headline['id']}/"
        etag = (await http.get(url)).headers["etag"]
        wait = asyncio.create_task(http.get(url, headers={"If-None-Match": etag, "Wait": "20"}))
        await asyncio.sleep(0.5)
        await http.put(url, json={"type": "normal", "text": "via nginx"})
        answer = await wait
        assert answer.status_code == 200 and answer.json()["text"] == "via nginx"
