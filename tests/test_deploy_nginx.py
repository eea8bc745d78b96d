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
from tests.http_helpers import hub, next_event, sse_events, wait_for
from tests.nginx_server import nginx
from tests.redis_server import redis_server
from tidings.testing import Client, LiveServer, live_server


@pytest.fixture(scope="module")
def deployment() -> Iterator[tuple[str, list[LiveServer]]]:
    """nginx's URL, and the two tidings processes behind it."""
    with (
        redis_server() as redis,
        live_server(APP, env=server_env({"BROKER": redis.url})) as one,
        live_server(APP, env=server_env({"BROKER": redis.url})) as two,
        nginx([one.port, two.port]) as url,
    ):
        yield url, [one, two]


@pytest.fixture(scope="module")
def stack(deployment) -> str:
    return deployment[0]


async def held(backends: list[LiveServer], topic: str) -> int:
    """Requests held on ``topic`` by the processes behind nginx, whichever got them."""
    return sum([(await hub(s, topic))["subscribers"] for s in backends])


async def wait_held(backends: list[LiveServer], topic: str, request: asyncio.Task) -> None:
    """Return once a process holds ``request`` (it is unanswered and subscribed): a
    publish before then would be read from history by a late request, held or not."""

    async def holding() -> bool:
        return request.done() or await held(backends, topic) > 0

    await wait_for(holding)
    assert not request.done(), "answered before it was held"


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


async def test_long_poll_and_a_held_view_through_nginx(deployment):
    url, backends = deployment
    async with httpx.AsyncClient(base_url=url, timeout=30) as http, ws(url) as pub:
        topic = "test.nginx-lp"
        first = (await http.get("/realtime/poll", params={"topic": topic, "timeout": 0})).json()
        await wait_for(lambda: _none_held(backends, topic))  # the poll above has left
        poll = asyncio.create_task(
            http.get(
                "/realtime/poll", params={"topic": topic, "since": first["since"], "timeout": 20}
            )
        )
        await wait_held(backends, topic, poll)
        await pub.publish(topic, "released")
        assert [m["data"] for m in (await poll).json()["messages"]] == ["released"]

        headline = (await http.post("/headlines/")).json()
        path, topic = f"/headlines/{headline['id']}/", f"headlines.{headline['id']}"
        etag = (await http.get(path)).headers["etag"]
        wait = asyncio.create_task(http.get(path, headers={"If-None-Match": etag, "Wait": "20"}))
        await wait_held(backends, topic, wait)
        await http.put(path, json={"type": "normal", "text": "via nginx"})
        answer = await wait
        assert answer.status_code == 200 and answer.json()["text"] == "via nginx"


async def _none_held(backends: list[LiveServer], topic: str) -> bool:
    return await held(backends, topic) == 0
