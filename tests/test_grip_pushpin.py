"""tidings' own endpoints behind a real Pushpin: SSE, long-poll and the WebSocket
protocol (WebSocket-over-HTTP), gaps recovered from history, Pushpin restarts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.http_helpers import (
    next_event,
    pushpin_subscribes,
    sse_events,
    wait_pushpin_subscribed,
)
from tests.pushpin_server import Pushpin, grip_stack
from tidings.testing import Client, LiveServer


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[LiveServer, Pushpin]]:
    with grip_stack() as s:
        yield s


def publish(server: LiveServer, topic: str, data: object) -> str:
    """Publish on the backend directly (not through Pushpin); return the position."""
    r = httpx.post(f"{server.url}/realtime/publish", json={"topic": topic, "data": data})
    assert r.status_code == 200, r.text
    return str(r.json()["position"])


async def apublish(server: LiveServer, topic: str, data: object) -> str:
    return await asyncio.to_thread(publish, server, topic, data)


async def test_sse_endpoint_through_pushpin_two_topics(stack):
    server, proxy = stack
    url = f"{proxy.url}/realtime/sse?topic=test.gsse.a&topic=test.gsse.b"
    async with httpx.AsyncClient(timeout=10) as http, http.stream("GET", url) as r:
        assert r.status_code == 200
        events = sse_events(r)
        opened = await next_event(events)
        assert opened.event == "tidings.open"
        a1 = await apublish(server, "test.gsse.a", {"n": 1})
        e = await next_event(events)
        assert e.event == "message" and json.loads(e.data) == {"n": 1}
        b1 = await apublish(server, "test.gsse.b", {"n": 2})
        e = await next_event(events)
        assert json.loads(e.data) == {"n": 2}
        assert e.id == f"{a1},{b1}"  # the cursor: every topic's position
        a2 = await apublish(server, "test.gsse.a", {"n": 3})
        e = await next_event(events)
        assert json.loads(e.data) == {"n": 3} and e.id == f"{a2},{b1}"


async def test_sse_resumes_through_a_pushpin_restart(stack):
    server, proxy = stack
    url = f"{proxy.url}/realtime/sse?topic=test.grestart"
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream("GET", url) as r:
            events = sse_events(r)
            await next_event(events)  # open
            await apublish(server, "test.grestart", {"n": 1})
            last = (await next_event(events)).id
        await asyncio.to_thread(proxy.restart)
        await apublish(server, "test.grestart", {"n": 2})  # Pushpin holds nobody now
        await apublish(server, "test.grestart", {"n": 3})
        headers = {"Last-Event-ID": last}
        async with http.stream("GET", url, headers=headers) as r:
            events = sse_events(r)
            opened = await next_event(events)
            assert json.loads(opened.data)["topics"]["test.grestart"]["recovered"] is True
            got = [json.loads((await next_event(events)).data)["n"] for _ in range(2)]
            assert got == [2, 3]
            await apublish(server, "test.grestart", {"n": 4})
            assert json.loads((await next_event(events)).data)["n"] == 4


async def test_long_poll_through_pushpin_held_and_released(stack):
    server, proxy = stack
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.get(
            f"{proxy.url}/realtime/poll", params={"topic": "test.gpoll", "timeout": 0}
        )
        since = r.json()["since"]
        start = time.monotonic()
        held = asyncio.ensure_future(
            http.get(
                f"{proxy.url}/realtime/poll",
                params={"topic": "test.gpoll", "since": since, "timeout": 15},
            )
        )
        await asyncio.sleep(0.7)
        assert not held.done()
        position = await apublish(server, "test.gpoll", {"n": 1})
        r = await asyncio.wait_for(held, 10)
        assert time.monotonic() - start < 8
        body = r.json()
        assert [m["data"] for m in body["messages"]] == [{"n": 1}]
        assert body["since"] == position
        # times out into the empty answer
        start = time.monotonic()
        r = await http.get(
            f"{proxy.url}/realtime/poll",
            params={"topic": "test.gpoll", "since": position, "timeout": 1},
        )
        assert r.status_code == 200 and r.json()["messages"] == []
        assert 0.9 < time.monotonic() - start < 8


async def test_websocket_protocol_over_http_through_pushpin(stack):
    server, proxy = stack
    async with Client(f"{proxy.ws_url}/realtime/ws", origin=proxy.url) as client:
        await client.request("ping")
        before = pushpin_subscribes(proxy, "tidings.t.test.gws")
        reply = await client.subscribe("test.gws")
        first = reply["position"]
        # the reply and the subscribe instruction leave the backend in one answer, but
        # Pushpin's proxy relays the reply while its handler applies the subscription:
        # the reply can come first (about 1 in 3 times here), and Pushpin drops a publish
        # on a channel before anyone is subscribed to it
        await wait_pushpin_subscribed(proxy, "tidings.t.test.gws", before)
        await apublish(server, "test.gws", {"n": 1})
        m = await client.next_message()
        assert m["topic"] == "test.gws" and m["data"] == {"n": 1}
        reply = await client.publish("test.gws", {"n": 2})  # rules and handlers apply
        assert reply["position"] != first
        m = await client.next_message()
        assert m["data"] == {"n": 2} and m["position"] == reply["position"]
        with pytest.raises(Exception, match="forbidden"):
            await client.publish("readonly.gws", {"n": 3})
        await client.request("unsubscribe", topic="test.gws")
        await apublish(server, "test.gws", {"n": 4})
        before = pushpin_subscribes(proxy, "tidings.t.test.gws2")
        await client.subscribe("test.gws2")
        await wait_pushpin_subscribed(proxy, "tidings.t.test.gws2", before)  # (as above)
        await apublish(server, "test.gws2", {"n": 5})
        assert (await client.next_message())["data"] == {"n": 5}  # not n=4: unsubscribed
    # resume with since: the replay comes from history
    async with Client(f"{proxy.ws_url}/realtime/ws", origin=proxy.url) as client:
        reply = await client.subscribe("test.gws", since=first)
        assert reply["recovered"] is True
        got = [(await client.next_message())["data"]["n"] for _ in range(3)]
        assert got == [1, 2, 4]


async def test_websocket_from_a_foreign_origin_is_refused_through_pushpin(stack):
    _, proxy = stack
    with pytest.raises(InvalidStatus) as e:
        async with connect(f"{proxy.ws_url}/realtime/ws", origin="http://evil.example"):
            pass
    assert e.value.response.status_code == 403
